"""Temperature scaling, the abstain threshold and out-of-scope data: the math on synthetic logits, the recipe and data
checks, and a real bundle that abstains (predict.py, without torch, agreeing with the report)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from edgetune import confidence, runtime
from edgetune.data import load_dataset
from edgetune.errors import BadInput
from edgetune.recipe import load_recipe
from helpers import SMART_HOME, assert_mentions, build, write_recipe
from test_pipeline import no_torch_env  # noqa: F401  (a fixture: predict.py runs where torch cannot import)


def miscalibrated(n: int = 3000, classes: int = 5, sharpen: float = 3.0, seed: int = 0):
    """Labels drawn from softmax(true logits); the model reports the true logits x `sharpen` (overconfident)."""
    rng = np.random.default_rng(seed)
    true = rng.normal(0, 1.5, (n, classes))
    probs = runtime.probabilities(true)
    labels = np.array([rng.choice(classes, p=p) for p in probs])
    return true * sharpen, labels


def test_temperature_fit_undoes_overconfidence_and_lowers_nll_and_ece():
    logits, labels = miscalibrated()
    t = confidence.fit_temperature(logits[:1500], labels[:1500])
    assert 2.5 < t < 3.5  # the logits were sharpened 3x
    held_logits, held_labels = logits[1500:], labels[1500:]  # scored on texts the fit did not see
    assert confidence.negative_log_likelihood(held_logits, held_labels, t) < \
        confidence.negative_log_likelihood(held_logits, held_labels) - 0.1
    before = confidence.expected_calibration_error(runtime.probabilities(held_logits), held_labels)
    after = confidence.expected_calibration_error(runtime.probabilities(held_logits, t), held_labels)
    assert before > 0.15 and after < 0.05
    # Temperature changes how sure the model says it is, never what it predicts.
    assert (runtime.probabilities(held_logits, t).argmax(-1) == held_logits.argmax(-1)).all()


def test_temperature_of_calibrated_logits_stays_near_one():
    logits, labels = miscalibrated(sharpen=1.0, seed=1)
    assert 0.85 < confidence.fit_temperature(logits, labels) < 1.15


def test_ece_of_a_perfectly_calibrated_bin_is_zero_and_of_a_wrong_sure_model_is_its_confidence():
    probs = np.array([[0.75, 0.25]] * 4)
    assert confidence.expected_calibration_error(probs, [0, 0, 0, 1]) == pytest.approx(0.0)
    assert confidence.expected_calibration_error(probs, [1, 1, 1, 1]) == pytest.approx(0.75)


@pytest.mark.parametrize("rate", [0.0, 0.01, 0.05, 0.2])
def test_false_accept_threshold_meets_the_rate_on_validation_and_is_the_lowest_that_does(rate):
    rng = np.random.default_rng(2)
    out_of_scope = rng.uniform(0.2, 0.9, 400)
    threshold = confidence.choose_threshold("false_accept_rate", rate, rng.uniform(0.5, 1, 400), out_of_scope)
    accepted = np.mean(out_of_scope >= threshold)
    assert accepted <= rate
    # One more accepted text would break the rate: the threshold gives up no more coverage than it must.
    assert np.mean(out_of_scope >= np.max(out_of_scope[out_of_scope < threshold])) > rate


@pytest.mark.parametrize("rate", [0.0, 0.05, 0.5])
def test_false_reject_threshold_rejects_at_most_the_rate_of_in_scope_validation(rate):
    in_scope = np.random.default_rng(3).uniform(0.3, 1, 300)
    threshold = confidence.choose_threshold("false_reject_rate", rate, in_scope, np.zeros(0))
    assert np.mean(in_scope < threshold) <= rate
    assert np.mean(in_scope <= threshold) > rate  # the next higher threshold would reject too many


def test_answers_apply_the_temperature_and_abstain_below_the_threshold():
    logits = np.array([[4.0, 0.0, 0.0], [1.0, 0.8, 0.0]])
    plain = runtime.answers(logits, ["a", "b", "c"])
    assert [label for label, _ in plain] == ["a", "a"]
    settings = {"temperature": 2.0, "threshold": 0.6, "abstain_label": "out_of_scope"}
    (first, p1), (second, p2) = runtime.answers(logits, ["a", "b", "c"], settings)
    assert first == "a" and p1 == pytest.approx(runtime.probabilities(logits, 2.0)[0, 0]) and p1 < plain[0][1]
    assert second == "out_of_scope" and p2 < 0.6


def test_open_set_scores_count_an_abstention_as_wrong_and_recall_as_abstained_out_of_scope():
    probs = np.array([[0.9, 0.1], [0.55, 0.45], [0.2, 0.8], [0.3, 0.7]])
    oos = np.array([[0.5, 0.5], [0.95, 0.05]])
    scores = confidence.open_set_scores(probs, [0, 0, 1, 0], oos, threshold=0.6)
    assert scores == {"in_scope_accuracy": 0.5, "coverage": 0.75, "selective_accuracy": pytest.approx(2 / 3),
                      "out_of_scope_recall": 0.5}
    assert confidence.open_set_scores(probs, [0, 0, 1, 0], oos, None)["out_of_scope_recall"] == 0.0


def test_fit_meets_the_false_accept_rate_on_validation_and_scores_the_test_split(tmp_path):
    """confidence.fit on a dataset whose logits come from a table: overconfident in-scope logits, flatter
    out-of-scope ones; the threshold accepts at most 10% of out-of-scope validation texts."""
    from edgetune.data import Dataset, OutOfScope, Split

    logits, labels = miscalibrated(n=1200, sharpen=3.0, seed=4)
    oos = np.random.default_rng(5).normal(0, 1.0, (400, 5))
    table = {f"in{i}": row for i, row in enumerate(logits)} | {f"oos{i}": row for i, row in enumerate(oos)}
    texts = [f"in{i}" for i in range(len(logits))]
    split = lambda lo, hi: Split(tuple(texts[lo:hi]), tuple(int(x) for x in labels[lo:hi]))  # noqa: E731
    dataset = Dataset(("a", "b", "c", "d", "e"), split(0, 600), split(0, 600), split(600, 1200), False,
                      OutOfScope(tuple(f"oos{i}" for i in range(200)), tuple(f"oos{i}" for i in range(200, 400))))
    recipe = load_recipe(recipe_with(tmp_path, open_set_data(tmp_path / "data")),
                         overrides=("data.out_of_scope_label=oos", "confidence.threshold_rate=0.1"))
    settings, section = confidence.fit(recipe, dataset, lambda t: np.array([table[x] for x in t]), logits[600:])
    assert section["validation_false_accept_rate"] <= 0.1 and section["out_of_scope_validation_texts"] == 200
    assert section["ece_test_after"] < section["ece_test_before"] / 2 and 2.5 < section["temperature"] < 3.5
    assert settings == {"temperature": section["temperature"], "threshold": section["threshold"],
                        "abstain_label": "oos", "method": confidence.METHOD}
    answered = [label != "oos" for label, _ in runtime.answers(logits[600:], list("abcde"), settings)]
    assert section["coverage"] == pytest.approx(np.mean(answered))  # the report scores what the bundle answers
    assert 0.5 < section["out_of_scope_recall"] <= 1 and section["coverage"] < 1


# --- data and recipe ---------------------------------------------------------------------------------------------

def write_split(path: Path, rows) -> str:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return str(path)


def open_set_data(folder: Path, validation_oos: bool = True) -> dict:
    """Smart-home splits with an `oos` label in test, and in train and validation when `validation_oos`."""
    def rows(split):
        with open(SMART_HOME / f"{split}.csv", newline="", encoding="utf-8") as handle:
            return [(r["text"], r["label"]) for r in csv.DictReader(handle)]

    oos = [("what is the capital of peru", "oos"), ("tell me a joke about penguins", "oos")]
    folder.mkdir(parents=True, exist_ok=True)
    return {"train": write_split(folder / "train.csv", rows("train") + (oos[:1] if validation_oos else [])),
            "validation": write_split(folder / "validation.csv",
                                      rows("validation") + (oos[1:] if validation_oos else [])),
            "test": write_split(folder / "test.csv", rows("test") + oos)}


def recipe_with(tmp_path, data: dict, **sections) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"data": data, **sections}))
    return path


def test_out_of_scope_rows_are_no_class_and_stay_out_of_every_split(tmp_path):
    data = open_set_data(tmp_path / "data")
    plain = load_recipe(recipe_with(tmp_path, data))
    assert "oos" in load_dataset(plain.data, 0).label_names  # not configured: a label like any other
    recipe = load_recipe(recipe_with(tmp_path, {**data, "out_of_scope_label": "oos"}))
    dataset = load_dataset(recipe.data, 0)
    assert "oos" not in dataset.label_names
    assert dataset.out_of_scope.test == ("what is the capital of peru", "tell me a joke about penguins")
    # Train's out-of-scope row is never trained on: it joins validation's, for choosing the threshold.
    assert set(dataset.out_of_scope.validation) == {"what is the capital of peru", "tell me a joke about penguins"}
    assert "what is the capital of peru" not in dataset.train.texts + dataset.test.texts + dataset.validation.texts
    assert confidence.abstains(recipe) and confidence.abstain_label(recipe) == "oos"


def test_an_unset_out_of_scope_label_keeps_the_cache_keys_of_earlier_builds():
    assert "out_of_scope_label" not in load_recipe().section("data")


@pytest.mark.parametrize(("sections", "says"), [
    ({"confidence": {"threshold_rate": 1.5}}, "confidence.threshold_rate = 1.5 must be within [0, 1)"),
    ({"confidence": {"abstain": "maybe"}}, "'confidence.abstain' = 'maybe' is not one of auto, True, False"),
    ({"confidence": {"threshold_rule": "false_positive_rate"}}, "false_accept_rate, false_reject_rate"),
    ({"confidence": {"treshold_rate": 0.1}}, "did you mean 'threshold_rate'?"),
])
def test_bad_confidence_settings_name_the_key(tmp_path, sections, says):
    with pytest.raises(BadInput) as err:
        load_recipe(recipe_with(tmp_path, open_set_data(tmp_path / "data"), **sections))
    assert says in str(err.value)


def test_false_accept_rate_without_out_of_scope_validation_texts_fails_before_training(tmp_path):
    data = {**open_set_data(tmp_path / "data", validation_oos=False), "out_of_scope_label": "oos"}
    recipe = load_recipe(recipe_with(tmp_path, data))
    with pytest.raises(BadInput) as err:
        confidence.check(recipe, load_dataset(recipe.data, 0))
    assert "false_accept_rate needs out-of-scope texts in the validation split" in str(err.value)
    assert "confidence.threshold_rule: false_reject_rate" in str(err.value)
    relaxed = load_recipe(recipe_with(tmp_path, data, confidence={"threshold_rule": "false_reject_rate"}))
    assert confidence.check(relaxed, load_dataset(relaxed.data, 0)) == []


def test_the_build_stops_with_exit_2_before_training_when_the_threshold_rule_cannot_be_met(tmp_path, tiny_teacher):
    data = {**open_set_data(tmp_path / "data", validation_oos=False), "out_of_scope_label": "oos"}
    recipe = write_recipe(tmp_path / "recipe.yaml", tiny_teacher, {f"data.{k}": v for k, v in data.items()})
    result = build(recipe, tmp_path / "out")
    assert result.exit_code == 2
    assert_mentions(result.output, "confidence.threshold_rule false_accept_rate needs out-of-scope texts")
    assert not (tmp_path / "out" / "cache").exists() or not any((tmp_path / "out" / "cache").iterdir())


def test_a_label_named_like_out_of_scope_gets_a_hint_and_a_colliding_abstain_label_an_error(tmp_path):
    data = open_set_data(tmp_path / "data")
    recipe = load_recipe(recipe_with(tmp_path, data))
    assert "set data.out_of_scope_label: oos" in confidence.check(recipe, load_dataset(recipe.data, 0))[0]
    clash = load_recipe(recipe_with(tmp_path, data, confidence={"abstain": True, "abstain_label": "oos",
                                                                 "threshold_rule": "false_reject_rate"}))
    with pytest.raises(BadInput, match="is also a trained label"):
        confidence.check(clash, load_dataset(clash.data, 0))


# --- a real bundle -------------------------------------------------------------------------------------------------

def test_the_bundle_abstains_as_the_report_says(built, no_torch_env, tmp_path):
    """Abstaining below a threshold that rejects half the validation texts: only bench runs again; predict.py,
    without torch, abstains on exactly the share of test texts the report says it does not cover."""
    recipe = yaml.safe_load(built.recipe.read_text())  # the session's shared recipe: changed in a copy only
    recipe["confidence"] = {"abstain": True, "threshold_rule": "false_reject_rate", "threshold_rate": 0.5}
    abstaining = tmp_path / "abstaining.yaml"
    abstaining.write_text(yaml.safe_dump(recipe))
    result = build(abstaining, built.out)
    assert result.exit_code == 0, result.output
    assert "abstains (out_of_scope) below" in result.output
    bundle = built.out / "rpi5" / "bundle"
    settings = json.loads((bundle / "confidence.json").read_text())
    section = json.loads((built.out / "rpi5" / "report.json").read_text())["confidence"]
    assert settings["threshold"] == section["threshold"] and settings["temperature"] == section["temperature"]
    assert section["validation_false_reject_rate"] <= 0.5 and 0 < section["coverage"] < 1
    assert "## Confidence" in (built.out / "rpi5" / "report.md").read_text()
    with open(SMART_HOME / "test.csv", newline="", encoding="utf-8") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)]
    out = subprocess.run([sys.executable, str(bundle / "predict.py"), *texts], env=no_torch_env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    answers = [line.split("\t") for line in out.stdout.strip().splitlines()]
    abstained = sum(label == "out_of_scope" for label, _ in answers)
    assert abstained / len(texts) == pytest.approx(1 - section["coverage"])
    printed = settings["threshold"] + 5e-4  # probabilities are printed to 3 decimals
    assert all(float(p) < printed for label, p in answers if label == "out_of_scope")
