"""Quantize: transformer fusions, then the recipe's quantization method (edgetune/quantizers/), per the target's preset.

Reads: export/model.onnx, export/merged/config.json, calibration texts (methods that read them), the validation
       split (accuracy-aware mode).
Writes: model.onnx (the model that ships), tokenizer files, labels.json, quantize.json (what was done: method,
        its settings, calibration, which weight-bearing nodes stayed float and why, a one-line `note`), and in
        accuracy-aware mode sensitivity.json (per-node sensitivity, the exclusion search).

The stage knows no method by name: it takes quantize.method's class from the registry (edgetune.quantizers).

Accuracy-aware mode (`quantize.max_accuracy_drop`): the quantized model's validation accuracy is compared with the
fp32 export's; when the drop exceeds the tolerance, every quantizable node is quantized alone and ranked by how far
it moves the logits on the validation texts (see edgetune/sensitivity.py for why not the calibration texts), and the
most sensitive nodes are kept float (1, 2, 4, ... then a bisection) until the drop is within tolerance. When no
allowed number of float nodes gets there, the stage fails with the best drop it reached.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

from edgetune import quantizers
from edgetune.console import log
from edgetune.data import load_dataset, read_calibration_texts, sequence_length, split_source
from edgetune.errors import BadInput
from edgetune.quantizers.graph import describe_nodes, fuse, quantizable, summary_note
from edgetune.recipe import Recipe
from edgetune.targets import Target


def calibration_texts(recipe: Recipe) -> tuple[list[str], str]:
    q = recipe.quantize
    if q.calibration:
        texts = read_calibration_texts(Path(q.calibration))
        origin = q.calibration
    else:
        texts = list(load_dataset(recipe.data, recipe.seed).train.texts)
        origin = f"the train split ({split_source(recipe.data, 'train')})"
    if not texts:
        raise BadInput(f"{origin}: the calibration set is empty; give a CSV with a `text` column and rows")
    random.Random(recipe.seed).shuffle(texts)
    return texts[: q.calibration_samples], origin


def fused_source(method: type[quantizers.Quantizer], recipe: Recipe, preset, export_dir: Path, work: Path,
                 metrics: dict) -> Path:
    """The graph the method quantizes: the export, fused as the method asks when quantize.optimize is on."""
    source = export_dir / "model.onnx"
    if not (recipe.quantize.optimize and method.fusion):
        return source
    config = json.loads((export_dir / "merged" / "config.json").read_text())
    fused = fuse(source, work / "fused.onnx", config, skip_layer_norm=preset.fuse_skip_layer_norm,
                 weight_only=method.fusion == "weight_only")
    metrics.update({f"fused_{k}": float(v) for k, v in fused.items()})
    return work / "fused.onnx"


def run(recipe: Recipe, *, inputs: dict[str, Path], out_dir: Path, target: Target) -> dict[str, float]:
    from transformers import AutoTokenizer

    from edgetune.training import input_names_of

    q, preset, export_dir = recipe.quantize, target.quantization, inputs["export"]
    method = quantizers.get(q.method)
    metrics: dict[str, float] = {}
    work = out_dir / "work"
    work.mkdir()
    source = fused_source(method, recipe, preset, export_dir, work, metrics)
    tokenizer = AutoTokenizer.from_pretrained(export_dir)
    texts, origin = calibration_texts(recipe) if method.reads_calibration(q) else ([], None)
    calibration = f"{len(texts)} text{'s' if len(texts) != 1 else ''} from {origin}" if texts else None
    quantizer = method(q, preset, source, work)
    log(f"method {q.method}{quantizer.log_detail()}, target preset {preset.weight_type} weights, "
        f"per_channel={preset.per_channel}, reduce_range={preset.reduce_range}"
        + (f"; calibration: {calibration}" if calibration else ""))
    max_length = sequence_length(recipe.data, tokenizer, load_dataset(recipe.data, recipe.seed).train.texts).tokens
    quantizer.prepare(texts, tokenizer, input_names_of(tokenizer), max_length)
    shipped = out_dir / "model.onnx"
    quantizer.quantize(shipped)
    kept, record = accuracy_aware(quantizer, recipe, max_length, shipped, export_dir, out_dir) \
        if q.max_accuracy_drop is not None and quantizer.changes_graph else ({}, {})
    metrics.update(record.get("metrics", {}))
    floats, quantized = describe_nodes(source, shipped, quantizer, kept)
    note = summary_note(quantizer, calibration, quantized, floats)
    summary = {
        "method": q.method, **quantizer.summary(),
        "calibration": {"texts": len(texts), "source": origin, "method": q.calibration_method} if texts else None,
        "fusions": bool(q.optimize and method.fusion),
        "preset": {k: getattr(preset, k) for k in ("weight_type", "activation_type", "per_channel", "reduce_range",
                                                    "symmetric_activations", "symmetric_weights",
                                                    "fuse_skip_layer_norm")},
        "quantized_nodes": quantized, "float_nodes": floats, "accuracy_aware": record.get("summary"),
        "size_bytes": shipped.stat().st_size, "note": note,
        **quantizer.extras(out_dir, export_dir / "model.onnx",
                           json.loads((export_dir / "merged" / "config.json").read_text())),
    }
    (out_dir / "quantize.json").write_text(json.dumps(summary, indent=2))
    shutil.rmtree(work)
    for item in export_dir.iterdir():  # tokenizer files and labels travel with the model
        if item.is_file() and item.name not in ("model.onnx", "manifest.json"):
            shutil.copy(item, out_dir / item.name)
    log(f"{q.method}: {summary['size_bytes'] / 1e6:.1f} MB (fp32 export "
        f"{(export_dir / 'model.onnx').stat().st_size / 1e6:.1f} MB); {note}")
    metrics.update(size_bytes=float(summary["size_bytes"]), quantized_nodes=float(sum(quantized.values())),
                   float_nodes=float(len(floats)))
    if texts:
        metrics["calibration_texts"] = float(len(texts))
    return metrics


def accuracy_aware(quantizer: quantizers.Quantizer, recipe: Recipe, max_length: int, shipped: Path, export_dir: Path,
                   out_dir: Path) -> tuple[dict[str, str], dict]:
    """quantize.max_accuracy_drop: keep the most sensitive nodes float until validation accuracy is within it."""
    from edgetune import runtime, sensitivity

    kept, record = sensitivity.accuracy_aware(
        quantizer, shipped=shipped, reference=export_dir / "model.onnx", float_graph=quantizer.source,
        candidates=quantizable(quantizer.source, quantizer),
        validation=load_dataset(recipe.data, recipe.seed).validation,
        tokenizer=runtime.load_tokenizer(export_dir, runtime.preprocess_settings(export_dir, max_length)),
        tolerance=recipe.quantize.max_accuracy_drop, cap=recipe.quantize.max_float_nodes, source=recipe.source,
        work=quantizer.work)
    if record.get("nodes"):
        (out_dir / "sensitivity.json").write_text(json.dumps(record["table"], indent=2))
    return kept, record
