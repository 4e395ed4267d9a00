"""What makes a bundle load in the Hugging Face ecosystem as well as with its own predict.py.

Beside model.onnx, bench writes config.json (the student's, with the bundle's label map) and caps the tokenizer's
model_max_length at the length edgetune measured with, so `ORTModelForSequenceClassification.from_pretrained(bundle)`
and `pipeline("text-classification", model=..., tokenizer=bundle, truncation=True)` answer as predict.py does.
README.md is the model card; the merged PyTorch student is kept beside the bundle at a stable path.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

from edgetune.recipe import Recipe
from edgetune.report_json import Report

PYTORCH_STUDENT = "pytorch_student"  # DIR/<target>/pytorch_student: AutoModelForSequenceClassification folder


def write_config(merged: Path, bundle: Path, max_length: int) -> None:
    """config.json from the merged student's, labelled as labels.json orders the logits; tokenizer capped."""
    labels = json.loads((bundle / "labels.json").read_text())
    config = json.loads((merged / "config.json").read_text())
    config["id2label"] = {str(i): name for i, name in enumerate(labels)}
    config["label2id"] = {name: i for i, name in enumerate(labels)}
    (bundle / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    tokenizer_config = bundle / "tokenizer_config.json"
    settings = json.loads(tokenizer_config.read_text())
    settings["model_max_length"] = max_length  # truncation=True then cuts where predict.py cuts
    tokenizer_config.write_text(json.dumps(settings, indent=2) + "\n")


def keep_pytorch_student(merged: Path, out_dir: Path) -> Path:
    """The merged student (weights, config, tokenizer) at out_dir/pytorch_student, hard-linked from the cache
    where the filesystem allows (the cache entry is immutable once published), copied otherwise."""

    def link_or_copy(src, dst):
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    target = out_dir / PYTORCH_STUDENT
    shutil.copytree(merged, target, copy_function=link_or_copy)
    return target


def wilson_interval(share: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion measured on n examples."""
    if n == 0:
        return 0.0, 1.0
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def model_card(report: Report, recipe: Recipe, labels: list[str], max_length: int) -> str:
    """README.md of the bundle: task, labels, data, target, metrics with intervals, how it was built, limits."""
    lat, n = report.latency_ms, report.test_examples
    lo, hi = wilson_interval(report.accuracy, n)
    teacher_lo, teacher_hi = wilson_interval(report.teacher.accuracy, n)
    student = recipe.distill.student or f"layers {list(recipe.distill.layers)} of the teacher"
    lines = [
        "---", "pipeline_tag: text-classification", "library_name: onnx",
        f"tags: [edgetune, onnx, {report.quantization}, {report.target}]", "---", "",
        f"# {len(labels)}-label text classifier for {report.target} (edgetune)", "",
        f"Task: single-label text classification into {len(labels)} labels: " + ", ".join(f"`{x}`" for x in labels) + ".",
        "", "## Data", "",
        f"- train: `{Path(recipe.data.train).name}`, test: `{Path(recipe.data.test).name}` "
        f"({n} texts, sha256 `{report.test_set_sha256}`)",
        f"- texts are cut at {max_length} tokens (predict.py and this tokenizer's `model_max_length`)", "",
        "## Metrics (test split)", "",
        "| | value | 95% interval |", "|---|---|---|",
        f"| accuracy | {report.accuracy:.4f} | {lo:.4f}–{hi:.4f} (Wilson, n={n}) |",
        f"| macro-F1 | {report.macro_f1:.4f} | |",
        f"| teacher fp32 accuracy | {report.teacher.accuracy:.4f} | {teacher_lo:.4f}–{teacher_hi:.4f} |",
        f"| p95 latency (batch {lat.batch_size}) | {lat.p95:.2f} ms | {lat.p95_ci[0]:.2f}–{lat.p95_ci[1]:.2f} ms "
        f"(bootstrap, {lat.runs} runs) |",
        f"| speed-up vs fp32 teacher (p95) | {report.speedup_vs_teacher_p95.ratio:.1f}x | "
        f"{report.speedup_vs_teacher_p95.ci[0]:.1f}–{report.speedup_vs_teacher_p95.ci[1]:.1f}x |",
        f"| model size | {report.size_bytes / 1e6:.1f} MB | |", "",
        f"Latency host: {report.host.cpu} ({report.host.arch}), {report.host.threads} threads. {report.note}", "",
        "## How it was built", "",
        f"Teacher `{recipe.teacher.model}` ({report.teacher.layers} layers), fine-tuned on the train split; student "
        f"{student} ({report.student.layers} layers) distilled from it (T={recipe.distill.temperature:g}, "
        f"alpha={recipe.distill.alpha:g}), LoRA-tuned (r={recipe.tune.r}) and merged, exported to ONNX (opset "
        f"{recipe.export.opset}, validated against PyTorch), quantized `{report.quantization}` with the "
        f"{report.target} preset. Seed {recipe.seed}. Full measurements: `../report.json`, `../report.md`.", "",
        "## Use", "",
        "```bash", 'python predict.py "some text"          # onnxruntime + tokenizers + numpy, no torch', "```", "",
        "```python", "from optimum.onnxruntime import ORTModelForSequenceClassification",
        "from transformers import AutoTokenizer, pipeline",
        'model = ORTModelForSequenceClassification.from_pretrained("bundle")',
        'classify = pipeline("text-classification", model=model, tokenizer=AutoTokenizer.from_pretrained("bundle"))',
        'classify("some text", truncation=True)', "```", "",
        "## Limits", "",
        f"- It knows only these {len(labels)} labels: every text gets one of them, however far from the training data.",
        f"- Accuracy was measured on {n} test texts; the interval above is the sampling uncertainty of that number.",
        "- Latency is the measuring host's" + ("." if report.measured_on_target else
                                                   f", not measured on {report.target} itself."),
        f"- Text past {max_length} tokens is ignored.", "",
    ]
    return "\n".join(lines)
