"""Quantization keeps the model's answers: int8 and int4 builds agree with the fp32 student on a stated share of
test texts.

The model is the tiny teacher trained through the real pipeline on the separable toy task (tests/toy_task.py),
so its predictions have margins a faithful quantization keeps and garbage weights do not: a model that barely
learned would flip predictions under any rounding and prove nothing. Agreement is bench's own
`agreement_with_fp32` (the shipped ONNX model against the fp32 export, on the whole test split).
"""

from __future__ import annotations

import json

import pytest
from helpers import build, write_recipe
from toy_task import CHANCE, write_toy_data

MIN_AGREEMENT = {"int8-dynamic": 0.95, "int4": 0.90}  # shares of the 80 test texts
TRAINING = {"learning_rate": 3.0e-3, "batch_size": 16}


@pytest.fixture(scope="module")
def toy_build(tmp_path_factory, tiny_teacher):
    root = tmp_path_factory.mktemp("toy-build")
    data = write_toy_data(root / "data")
    recipe = write_recipe(root / "recipe.yaml", tiny_teacher, {
        "data.train": str(data["train"]), "data.validation": str(data["validation"]), "data.test": str(data["test"]),
        **{f"{stage}.{key}": value for stage in ("teacher", "distill", "tune") for key, value in TRAINING.items()},
        "teacher.epochs": 20, "teacher.patience": 20, "distill.epochs": 10, "distill.patience": 10})
    return recipe, root / "out"


def report_of(recipe, out, method: str) -> dict:
    result = build(recipe, out, "--set", f"quantize.method={method}")
    assert result.exit_code == 0, result.output
    return json.loads((out / "rpi5" / "report.json").read_text())


@pytest.mark.parametrize("method", ["int8-dynamic", "int4"])
def test_quantized_predictions_agree_with_fp32(toy_build, method):
    report = report_of(*toy_build, method)
    assert report["quantization"] == method
    # The fp32 model learned the task: its answers are worth keeping.
    assert report["student_fp32"]["accuracy"] >= 0.9 > 3 * CHANCE, report["student_fp32"]
    assert report["agreement_with_fp32"] >= MIN_AGREEMENT[method], (
        f"{method}: {report['agreement_with_fp32']:.1%} of predictions equal to fp32's, "
        f"below {MIN_AGREEMENT[method]:.0%}")
    assert report["accuracy"] >= report["student_fp32"]["accuracy"] - (1 - MIN_AGREEMENT[method])
