"""Accuracy-aware quantization: measure the validation drop, rank nodes by sensitivity, keep the worst in float.

A node's sensitivity is how far the logits move from the float graph's on the validation texts when that node
alone is quantized (mean |logit difference|, plus how many predictions change). The search keeps the k most
sensitive nodes float for k = 1, 2, 4, ... until the validation drop is within tolerance, then bisects between the
last k that failed and the first that passed, so few nodes stay float. Only onnxruntime and a tokenizer: no torch.

Why validation texts and not the calibration texts: static ranges are fitted to the calibration texts, so on them
a node shows only rounding error, never the clipping that costs accuracy on other inputs. Measured on the demo
model with a one-text calibration set: ranked on that text, the two nodes that mattered came last of 21 and 19
nodes had to stay float; ranked on validation, they come first. The test split stays untouched for the bench.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from edgetune.console import log, progress
from edgetune import runtime
from edgetune.data import Split
from edgetune.errors import StageFailed

Quantize = Callable[..., None]  # quantize(dst, exclude=(...), only=[...] | None)


def feeds_of(texts: Sequence[str], tokenizer, model: Path, batch_size: int = 32) -> tuple[list[dict], np.ndarray]:
    """Padded batches of similar lengths (the runtime's feeds, with the bundle's tokenizer), and the order their
    rows came from. Every candidate graph has the float graph's inputs, so one set of feeds serves them all."""
    session = runtime.open_session(model, threads=0)
    order = np.argsort([sum(e.attention_mask) for e in tokenizer.encode_batch(list(texts))], kind="stable")
    feeds = [runtime.encode([texts[i] for i in order[start : start + batch_size]], tokenizer, session)
             for start in range(0, len(order), batch_size)]
    return feeds, order


def logits_of(model: Path, feeds: list[dict], order: np.ndarray) -> np.ndarray:
    """The model's logits for every row, in the texts' original order."""
    session = runtime.open_session(model, threads=0)  # 0: onnxruntime's default, one thread per core
    out = np.concatenate([session.run(None, feed)[0] for feed in feeds])
    result = np.empty_like(out)
    result[order] = out
    return result


def rank_nodes(quantize: Quantize, candidates: list[tuple[str, str]], float_graph: Path, feeds, order,
               work: Path) -> list[dict]:
    """Sensitivity of each candidate node, most sensitive first."""
    reference = logits_of(float_graph, feeds, order)
    rows = []
    with progress() as bar:
        task = bar.add_task("sensitivity: one node quantized at a time", total=len(candidates))
        for name, op_type in candidates:
            path = work / "alone.onnx"
            quantize(path, only=[name])
            got = logits_of(path, feeds, order)
            rows.append({"node": name, "op_type": op_type, "error": float(np.abs(got - reference).mean()),
                         "prediction_changes": int((got.argmax(-1) != reference.argmax(-1)).sum())})
            bar.advance(task)
    rows.sort(key=lambda r: (-r["error"], -r["prediction_changes"], r["node"]))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return rows


def fewest_float_nodes(attempt: Callable[[int], bool], limit: int) -> int | None:
    """The fewest k <= limit for which attempt(k) passes: k = 1, 2, 4, ... then a bisection; None if none does."""
    passed, failed, k = None, 0, 1
    while limit and passed is None:
        k = min(k, limit)
        if attempt(k):
            passed = k
        elif k == limit:
            break
        else:
            failed, k = k, k * 2
    while passed is not None and passed - failed > 1:
        middle = (passed + failed) // 2
        if attempt(middle):
            passed = middle
        else:
            failed = middle
    return passed


def out_of_reach(tried: dict[int, dict], ordered: list[str], fp32: float, tolerance: float, cap_note: str,
                 source: str) -> StageFailed:
    """The failure when no allowed number of float nodes met the tolerance: the best drop reached, and the fix."""
    best_k = min(tried, key=lambda n: (tried[n]["drop"], n))
    best = tried[best_k]
    shown = ", ".join(ordered[:best_k][:6]) + (" ..." if best_k > 6 else "")
    return StageFailed(
        f"accuracy-aware quantization could not meet quantize.max_accuracy_drop={tolerance:g}: the best "
        f"validation accuracy drop was {best['drop']:.4f} (fp32 {fp32:.4f}, quantized "
        f"{best['validation_accuracy']:.4f}) with {best_k} node(s) kept float"
        + (f" ({shown})" if best_k else "") + f"; tried keeping up to {cap_note}. Raise quantize.max_accuracy_drop "
        f"or quantize.max_float_nodes in {source}, or try another quantize.method or calibration set"
    )


def accuracy_aware(quantize: Quantize, *, shipped: Path, reference: Path, float_graph: Path,
                   candidates: list[tuple[str, str]], validation: Split, tokenizer, tolerance: float,
                   cap: int | None, source: str, work: Path) -> tuple[dict[str, str], dict]:
    """Check `shipped` against `reference` (the fp32 export) on validation; re-quantize it within tolerance.

    Returns ({node kept float: why}, {"metrics", "summary", "table", "nodes"}); rewrites `shipped` when nodes are
    kept float; raises StageFailed when no allowed number of float nodes meets the tolerance.
    """
    labels = np.asarray(validation.labels)
    feeds, order = feeds_of(validation.texts, tokenizer, reference)

    def accuracy(model: Path) -> float:
        return float(np.mean(logits_of(model, feeds, order).argmax(-1) == labels))

    fp32 = accuracy(reference)
    first = accuracy(shipped)
    drop = fp32 - first
    log(f"validation accuracy: fp32 {fp32:.4f}, quantized {first:.4f}: drop {drop:+.4f} "
        f"(quantize.max_accuracy_drop {tolerance:g}, {len(labels)} examples)")
    metrics = {"validation_accuracy_fp32": fp32, "validation_accuracy": first, "accuracy_drop": drop,
               "nodes_kept_float": 0.0}
    summary = {"tolerance": tolerance, "validation_examples": len(labels), "validation_accuracy_fp32": fp32,
               "initial": {"validation_accuracy": first, "drop": drop}, "kept_float": []}
    if drop <= tolerance:
        summary["final"] = summary["initial"]
        return {}, {"metrics": metrics, "summary": summary}

    limit = len(candidates) if cap is None else min(cap, len(candidates))
    log(f"drop {drop:.4f} > {tolerance:g}: ranking {len(candidates)} quantizable nodes by sensitivity on the "
        f"{len(labels)} validation texts")
    rows = rank_nodes(quantize, candidates, float_graph, feeds, order, work) if limit else []
    ordered = [r["node"] for r in rows]
    tried: dict[int, dict] = {0: {"float_nodes": 0, "validation_accuracy": first, "drop": drop,
                                  "within_tolerance": False}}

    def attempt(k: int) -> bool:
        path = work / f"float-{k}.onnx"
        quantize(path, exclude=ordered[:k])
        acc = accuracy(path)
        tried[k] = {"float_nodes": k, "validation_accuracy": acc, "drop": fp32 - acc,
                    "within_tolerance": fp32 - acc <= tolerance, "path": path}
        log(f"{k} most sensitive node(s) float: validation accuracy {acc:.4f}, drop {fp32 - acc:+.4f}")
        return tried[k]["within_tolerance"]

    passed = fewest_float_nodes(attempt, limit)
    search = [{k: v for k, v in t.items() if k != "path"} for _, t in sorted(tried.items())]
    table = {"metric": f"mean |logit - float logit| on the {len(labels)} validation texts with only this node "
                       "quantized; prediction_changes counts argmax changes on the same texts",
             **summary, "nodes": rows, "search": search}
    if passed is None:
        cap_note = (f"{limit} of the {len(candidates)} quantizable nodes float (quantize.max_float_nodes={cap})"
                    if cap is not None and cap < len(candidates) else f"all {len(candidates)} quantizable nodes float")
        raise out_of_reach(tried, ordered, fp32, tolerance, cap_note, source)
    shutil.copy(tried[passed]["path"], shipped)
    kept = {r["node"]: f"accuracy-aware: kept float, sensitivity rank {r['rank']} of {len(rows)} "
                       f"(mean |logit difference| {r['error']:.3g} quantized alone)" for r in rows[:passed]}
    for row in rows:
        row["kept_float"] = row["node"] in kept
    final = tried[passed]
    summary.update(kept_float=list(kept), final={"validation_accuracy": final["validation_accuracy"], "drop": final["drop"]})
    table.update(summary)
    metrics.update(validation_accuracy=final["validation_accuracy"], accuracy_drop=final["drop"],
                   nodes_kept_float=float(passed), sensitivity_nodes=float(len(rows)))
    log(f"kept {passed} node(s) float: validation accuracy {final['validation_accuracy']:.4f} "
        f"(drop {final['drop']:+.4f} <= {tolerance:g}); sensitivity table in sensitivity.json")
    return kept, {"metrics": metrics, "summary": summary, "table": table, "nodes": rows}
