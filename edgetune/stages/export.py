"""Export: merge the LoRA adapter into the student, export ONNX, validate it against PyTorch.

Reads: distill/model, tune/adapter, the recipe's test split (real inputs for validation).
Writes: merged/ (AutoModelForSequenceClassification folder), model.onnx (dynamic batch and sequence
        axes), tokenizer files and labels.json beside it.
Validation: the largest |onnx - torch| logit difference on real padded batches must not exceed
export.atol, else the stage fails.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from edgetune.console import log
from edgetune.data import encode, load_dataset, pad_batch
from edgetune.errors import StageFailed
from edgetune.recipe import Recipe
from edgetune.targets import Target


def merged_model(student_dir: Path, adapter_dir: Path):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    student = AutoModelForSequenceClassification.from_pretrained(student_dir)
    return PeftModel.from_pretrained(student, adapter_dir).merge_and_unload().eval()


def export_onnx(model, names: tuple[str, ...], path: Path, opset: int, sample: dict) -> None:
    import torch

    dynamic = {name: {0: "batch", 1: "sequence"} for name in names} | {"logits": {0: "batch"}}
    # The TorchScript exporter: seconds instead of the dynamo exporter's tens of seconds, and its graphs
    # match onnxruntime's transformer-fusion patterns (attention, LayerNorm, GELU).
    torch.onnx.export(
        model, (), str(path), kwargs={n: torch.from_numpy(sample[n]) for n in names},
        input_names=list(names), output_names=["logits"], dynamic_axes=dynamic, opset_version=opset, dynamo=False,
    )


def max_difference(model, onnx_path: Path, names, batches: list[dict]) -> float:
    import numpy as np
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst = 0.0
    with torch.no_grad():
        for batch in batches:
            reference = model(**{n: torch.from_numpy(batch[n]) for n in names}).logits.numpy()
            (got,) = session.run(["logits"], {n: batch[n] for n in names})
            worst = max(worst, float(np.abs(got - reference).max()))
    return worst


def run(recipe: Recipe, *, inputs: dict[str, Path], out_dir: Path, target: Target) -> dict[str, float]:
    import warnings

    from transformers import AutoTokenizer

    from edgetune.training import input_names_of

    model = merged_model(inputs["distill"] / "model", inputs["tune"] / "adapter")
    tokenizer = AutoTokenizer.from_pretrained(inputs["tune"] / "adapter")
    model.save_pretrained(out_dir / "merged")
    tokenizer.save_pretrained(out_dir / "merged")
    names = input_names_of(tokenizer)
    data = load_dataset(recipe.data, recipe.seed)
    test = encode(tokenizer, data.test.texts, data.test.labels, recipe.data.max_length)
    rows = test.input_ids[: recipe.export.validation_samples]
    batches = [pad_batch(rows[i : i + 16], tokenizer.pad_token_id) for i in range(0, len(rows), 16)]
    batches.append(pad_batch(rows[:1], tokenizer.pad_token_id))  # batch 1: the shape an edge device runs
    onnx_path = out_dir / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(model, names, onnx_path, recipe.export.opset, batches[0])
    worst = max_difference(model, onnx_path, names, batches)
    log(f"ONNX vs PyTorch on {len(rows)} test inputs: max |logit difference| {worst:.2e} (atol {recipe.export.atol:g})")
    if worst > recipe.export.atol:
        raise StageFailed(
            f"export validation failed: max |onnx - torch| logit difference {worst:.3e} exceeds "
            f"export.atol={recipe.export.atol:g}; raise export.atol in {recipe.source} if that difference is acceptable"
        )
    tokenizer.save_pretrained(out_dir)
    shutil.copy(inputs["tune"] / "labels.json", out_dir / "labels.json")
    return {"max_abs_diff": worst, "size_bytes": float(onnx_path.stat().st_size), "opset": float(recipe.export.opset)}
