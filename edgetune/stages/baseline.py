"""Baseline: the fine-tuned teacher as fp32 ONNX, the reference the report's speed-ups are measured against.

Reads: teacher/model, the recipe's test split (real inputs for validation).
Writes: model.onnx, tokenizer files, labels.json (the same layout as export/, so bench treats both alike).
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

from edgetune.console import log
from edgetune.data import encode, load_dataset, pad_batch, sequence_length
from edgetune.errors import StageFailed
from edgetune.recipe import Recipe
from edgetune.targets import Target


def run(recipe: Recipe, *, inputs: dict[str, Path], out_dir: Path, target: Target) -> dict[str, float]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from edgetune.stages.export import export_onnx, max_difference
    from edgetune.training import input_names_of

    teacher_dir = inputs["teacher"] / "model"
    model = AutoModelForSequenceClassification.from_pretrained(teacher_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    names = input_names_of(tokenizer)
    data = load_dataset(recipe.data, recipe.seed)
    length = sequence_length(recipe.data, tokenizer, data.train.texts).tokens
    rows = encode(tokenizer, data.test.texts, data.test.labels, length).input_ids[:32]
    batches = [pad_batch(rows[i : i + 16], tokenizer.pad_token_id) for i in range(0, len(rows), 16)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(model, names, out_dir / "model.onnx", recipe.export.opset, batches[0])
    worst = max_difference(model, out_dir / "model.onnx", names, batches)
    log(f"teacher ONNX vs PyTorch: max |logit difference| {worst:.2e}")
    if worst > recipe.export.atol:
        raise StageFailed(f"teacher ONNX export differs from PyTorch by {worst:.3e} > export.atol={recipe.export.atol:g}")
    tokenizer.save_pretrained(out_dir)
    shutil.copy(inputs["teacher"] / "labels.json", out_dir / "labels.json")
    return {"max_abs_diff": worst, "size_bytes": float((out_dir / "model.onnx").stat().st_size)}
