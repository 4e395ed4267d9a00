"""Confidence that means something, and an "I don't know": temperature scaling and an abstain threshold.

Both are fitted on the validation split's logits of the shipped model (the quantized graph, as it ships) and scored
on the test split, which neither has seen:

- Temperature scaling (Guo et al., 2017): one T > 0 that minimises the validation split's negative log-likelihood
  of softmax(logits / T). It changes no prediction, only how sure the probabilities say the model is.
- Abstain threshold on the calibrated top probability: below it the bundle answers the abstain label. Chosen on
  validation by confidence.threshold_rule: `false_accept_rate` accepts at most `threshold_rate` of the validation
  split's out-of-scope texts (rows labelled data.out_of_scope_label); `false_reject_rate` rejects at most
  `threshold_rate` of its in-scope texts, which bounds the cost on known intents but promises nothing about
  out-of-scope texts: their recall is then measured on test, never chosen.

Calibration error: expected calibration error (ECE) of the top-label confidence over ECE_BINS equal-width bins,
the share-weighted mean |accuracy - mean confidence| per bin, on in-scope texts.

Applying both is edgetune.runtime.answers (it ships in the bundle, beside predict.py); fitting and scoring them is
this module's, on edgetune.runtime.probabilities, so the bundle and the report use the same softmax.
"""

from __future__ import annotations

import math

import numpy as np

from edgetune.errors import BadInput
from edgetune.runtime import probabilities

ECE_BINS = 15
LOG_T_RANGE = (math.log(0.05), math.log(20.0))  # temperatures searched; NLL is unimodal in log T
METHOD = ("temperature scaling: one T minimising the validation split's NLL of softmax(logits / T) (golden-section "
          f"search over T in [0.05, 20]); ECE over {ECE_BINS} equal-width bins of the top-label probability")
DEFAULT_ABSTAIN_LABEL = "out_of_scope"
SUGGESTED_LABELS = ("oos", "out_of_scope", "out-of-scope", "outofscope")  # hinted at, never assumed


# --- the math ----------------------------------------------------------------------------------------------------

def negative_log_likelihood(logits, labels, temperature: float = 1.0) -> float:
    probs = probabilities(logits, temperature)
    return float(-np.mean(np.log(np.maximum(probs[np.arange(len(labels)), np.asarray(labels)], 1e-300))))


def fit_temperature(logits, labels, iterations: int = 60) -> float:
    """The T minimising NLL: golden-section search on log T (NLL is convex in 1/T, so unimodal in log T)."""
    lo, hi = LOG_T_RANGE
    ratio = (math.sqrt(5) - 1) / 2
    nll = lambda log_t: negative_log_likelihood(logits, labels, math.exp(log_t))  # noqa: E731
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(iterations):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(b)
    return math.exp((lo + hi) / 2)


def reliability(probs, labels, bins: int = ECE_BINS) -> list[dict]:
    """Per non-empty bin of top-label probability: its range, mean confidence, accuracy and count."""
    confidence, correct = probs.max(-1), probs.argmax(-1) == np.asarray(labels)
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    return [{"low": b / bins, "high": (b + 1) / bins, "confidence": float(confidence[index == b].mean()),
             "accuracy": float(correct[index == b].mean()), "count": int((index == b).sum())}
            for b in range(bins) if (index == b).any()]


def expected_calibration_error(probs, labels, bins: int = ECE_BINS) -> float:
    rows = reliability(probs, labels, bins)
    total = sum(r["count"] for r in rows)
    return float(sum(r["count"] / total * abs(r["accuracy"] - r["confidence"]) for r in rows))


def choose_threshold(rule: str, rate: float, in_scope, out_of_scope) -> float:
    """The abstain threshold on top probabilities (answer when >= it). `in_scope` / `out_of_scope`: the validation
    texts' top probabilities. false_reject_rate: the largest threshold that rejects at most rate x len(in_scope);
    false_accept_rate: the smallest that accepts at most rate x len(out_of_scope)."""
    if rule == "false_reject_rate":
        ranked = np.sort(np.asarray(in_scope))
        return float(ranked[min(int(math.floor(rate * len(ranked))), len(ranked) - 1)])
    ranked = np.sort(np.asarray(out_of_scope))[::-1]
    allowed = int(math.floor(rate * len(ranked)))
    return 0.0 if allowed >= len(ranked) else float(np.nextafter(ranked[allowed], np.inf))


def open_set_scores(probs, labels, out_of_scope_probs, threshold: float | None) -> dict:
    """In-scope accuracy (an abstention counts as wrong), coverage, accuracy where it answered, out-of-scope
    recall (share abstained). Without a threshold the model never abstains: coverage 1, recall 0."""
    threshold = -1.0 if threshold is None else threshold
    answered = probs.max(-1) >= threshold
    correct = probs.argmax(-1) == np.asarray(labels)
    oos_answered = out_of_scope_probs.max(-1) >= threshold if len(out_of_scope_probs) else np.zeros(0, bool)
    return {"in_scope_accuracy": float(np.mean(correct & answered)), "coverage": float(answered.mean()),
            "selective_accuracy": float(correct[answered].mean()) if answered.any() else None,
            "out_of_scope_recall": float(1 - oos_answered.mean()) if len(oos_answered) else None}


# --- the recipe's choices ------------------------------------------------------------------------------------------

def abstains(recipe) -> bool:
    wanted = recipe.confidence.abstain
    return recipe.data.out_of_scope_label is not None if wanted == "auto" else bool(wanted)


def abstain_label(recipe) -> str:
    return recipe.confidence.abstain_label or recipe.data.out_of_scope_label or DEFAULT_ABSTAIN_LABEL


def check(recipe, data) -> list[str]:
    """BadInput for a confidence setup the data cannot support, before any training; returns hints to print."""
    src, c, oos_label = recipe.source, recipe.confidence, recipe.data.out_of_scope_label
    if not data.test.texts:
        raise BadInput(f"{recipe.data.test}: every row is labelled {oos_label!r} (out of scope); the test split "
                       "needs texts of the known intents too")
    if abstains(recipe) and abstain_label(recipe) in data.label_names:
        raise BadInput(f"{src}: the abstain answer {abstain_label(recipe)!r} is also a trained label; set "
                       "confidence.abstain_label to another name, or data.out_of_scope_label to that label")
    if abstains(recipe) and c.threshold_rule == "false_accept_rate" and not data.out_of_scope.validation:
        where = (f"no row of {recipe.data.validation or recipe.data.train} is labelled {oos_label!r}" if oos_label
                 else "data.out_of_scope_label is not set")
        raise BadInput(f"{src}: confidence.threshold_rule false_accept_rate needs out-of-scope texts in the validation "
                       f"split, and {where}; add such rows (and name their label in data.out_of_scope_label), or set "
                       f"confidence.threshold_rule: false_reject_rate (the threshold then answers "
                       f"{1 - c.threshold_rate:.0%} of in-scope validation texts; out-of-scope recall is measured, "
                       "not chosen)")
    named = [name for name in data.label_names if name.lower() in SUGGESTED_LABELS]
    return [f"label {name!r} is trained as an intent like any other; to treat its rows as out of scope (the bundle "
            f"then abstains instead), set data.out_of_scope_label: {name}" for name in named if oos_label is None]


# --- fitted for a bundle -------------------------------------------------------------------------------------------

def fit(recipe, data, logits_of, test_logits) -> tuple[dict | None, dict]:
    """(the bundle's confidence.json, None when the recipe turns both off; the report's confidence section).
    `logits_of(texts)`: the shipped model's logits; `test_logits`: its logits on the in-scope test texts."""
    c = recipe.confidence
    classes = test_logits.shape[-1]
    run = lambda texts: logits_of(list(texts)) if texts else np.zeros((0, classes))  # noqa: E731
    val_logits, val_labels, test_labels = run(data.validation.texts), data.validation.labels, data.test.labels
    temperature = fit_temperature(val_logits, val_labels) if c.temperature_scaling else 1.0
    val_after, test_after = probabilities(val_logits, temperature), probabilities(test_logits, temperature)
    section = {
        "method": METHOD if c.temperature_scaling else f"no temperature scaling (T = 1); {METHOD.split('; ')[1]}",
        "temperature": temperature, "ece_bins": ECE_BINS,
        "ece_test_before": expected_calibration_error(probabilities(test_logits), test_labels),
        "ece_test_after": expected_calibration_error(test_after, test_labels),
        "ece_validation_before": expected_calibration_error(probabilities(val_logits), val_labels),
        "ece_validation_after": expected_calibration_error(val_after, val_labels),
        "nll_validation_before": negative_log_likelihood(val_logits, val_labels),
        "nll_validation_after": negative_log_likelihood(val_logits, val_labels, temperature),
        "in_scope_accuracy": float(np.mean(test_after.argmax(-1) == np.asarray(test_labels))),
        "abstain": abstains(recipe), "out_of_scope_validation_texts": len(data.out_of_scope.validation),
        "out_of_scope_test_texts": len(data.out_of_scope.test),
    }
    threshold = None
    if abstains(recipe):
        oos_val = probabilities(run(data.out_of_scope.validation), temperature)
        threshold = choose_threshold(c.threshold_rule, c.threshold_rate, val_after.max(-1), oos_val.max(-1))
        scores = open_set_scores(test_after, test_labels, probabilities(run(data.out_of_scope.test), temperature),
                                 threshold)
        section |= {"abstain_label": abstain_label(recipe), "threshold": threshold, "threshold_rule": c.threshold_rule,
                    "threshold_rate": c.threshold_rate,
                    "validation_false_reject_rate": float(np.mean(val_after.max(-1) < threshold)),
                    "validation_false_accept_rate": float(np.mean(oos_val.max(-1) >= threshold))
                    if len(oos_val) else None,
                    "in_scope_accuracy_abstaining": scores["in_scope_accuracy"], "coverage": scores["coverage"],
                    "selective_accuracy": scores["selective_accuracy"],
                    "out_of_scope_recall": scores["out_of_scope_recall"]}
    bundle = {"temperature": temperature, "threshold": threshold, "abstain_label": abstain_label(recipe),
              "method": section["method"]} if c.temperature_scaling or abstains(recipe) else None
    return bundle, section


def summary(section) -> str:
    """One log line: calibration, and the abstain threshold with what it cost and caught on test."""
    s = section
    line = (f"temperature {s.temperature:.3f}: test ECE {s.ece_test_before:.4f} -> {s.ece_test_after:.4f} "
            f"(validation NLL {s.nll_validation_before:.4f} -> {s.nll_validation_after:.4f})")
    if not s.abstain:
        return line
    recall = "no out-of-scope test texts" if s.out_of_scope_recall is None else \
        f"out-of-scope recall {s.out_of_scope_recall:.3f} ({s.out_of_scope_test_texts} texts)"
    return (f"{line}; abstains ({s.abstain_label}) below {s.threshold:.3f} ({s.threshold_rule.replace('_', ' ')} "
            f"{s.threshold_rate:g} on validation): test coverage {s.coverage:.3f}, in-scope accuracy "
            f"{s.in_scope_accuracy_abstaining:.4f} (answering all: {s.in_scope_accuracy:.4f}), {recall}")


def markdown_lines(section) -> list[str]:
    """report.md's confidence paragraph."""
    if section is None:
        return []
    s = section
    lines = ["## Confidence", "", f"Method: {s.method}. Fitted on validation, scored on the in-scope test texts.", "",
             "| | T | ECE test | ECE validation | NLL validation |", "|---|---|---|---|---|",
             f"| before | 1 | {s.ece_test_before:.4f} | {s.ece_validation_before:.4f} | "
             f"{s.nll_validation_before:.4f} |",
             f"| after | {s.temperature:.3f} | {s.ece_test_after:.4f} | {s.ece_validation_after:.4f} | "
             f"{s.nll_validation_after:.4f} |", ""]
    if not s.abstain:
        return lines
    rule = ("at most {:.0%} of out-of-scope validation texts accepted" if s.threshold_rule == "false_accept_rate"
            else "at most {:.0%} of in-scope validation texts rejected").format(s.threshold_rate)
    recall = "n/a (no out-of-scope test texts)" if s.out_of_scope_recall is None else f"{s.out_of_scope_recall:.4f}"
    return lines + [
        f"The bundle answers `{s.abstain_label}` when its calibrated top probability is below {s.threshold:.4f} "
        f"(chosen on validation: {rule}).", "",
        "| | in-scope accuracy | coverage | accuracy when answering | out-of-scope recall |", "|---|---|---|---|---|",
        f"| answering every text | {s.in_scope_accuracy:.4f} | 1.0000 | {s.in_scope_accuracy:.4f} | "
        f"{'n/a' if s.out_of_scope_recall is None else '0.0000'} |",
        f"| with the threshold | {s.in_scope_accuracy_abstaining:.4f} | {s.coverage:.4f} | "
        f"{s.selective_accuracy if s.selective_accuracy is None else format(s.selective_accuracy, '.4f')} | {recall} |",
        ""]
