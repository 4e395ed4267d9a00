"""Quantization methods are registered units: a method the stage has never heard of builds end to end."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from edgetune import quantizers
from edgetune.quantizers.int8_dynamic import int8_dynamic
from helpers import build, stage_statuses

TEST_METHOD = "test-matmul-int8"


class MatMulOnlyInt8(quantizers.Quantizer):
    """Test-only: int8 dynamic on MatMul nodes alone."""

    name = TEST_METHOD

    def quantize(self, dst: Path, exclude: Sequence[str] = (), only: Sequence[str] | None = None) -> None:
        preset = dataclasses.replace(self.preset, op_types=("MatMul",))
        int8_dynamic(self.source, dst, preset, exclude=exclude, only=only)

    def op_types(self) -> tuple[str, ...]:
        return ("MatMul",)

    def describe(self) -> str:
        return "test-only MatMul int8"


@pytest.fixture
def registered():
    quantizers.register(MatMulOnlyInt8)
    yield MatMulOnlyInt8
    quantizers.unregister(TEST_METHOD)


def test_shipped_methods_are_registered():
    assert set(quantizers.names()) >= {"none", "int8-dynamic", "int8-static", "int4"}


def test_a_method_registered_in_the_test_builds_end_to_end(built, registered):
    result = build(built.recipe, built.out, "--set", f"quantize.method={TEST_METHOD}")
    assert result.exit_code == 0, result.output
    assert stage_statuses(result.output)["quantize"] == "built"
    manifest = json.loads((built.out / "rpi5" / "bundle" / "manifest.json").read_text())
    folder = built.out / "cache" / f"quantize-{manifest['material']['upstream']['quantize'][:16]}"
    summary = json.loads((folder / "quantize.json").read_text())
    assert summary["method"] == TEST_METHOD and summary["note"].startswith("test-only MatMul int8")
    assert summary["quantized_nodes"].get("MatMul", 0) > 0
    assert summary["float_nodes"] and all(f["reason"] for f in summary["float_nodes"])
    report = json.loads((built.out / "rpi5" / "report.json").read_text())
    assert report["quantization"] == TEST_METHOD and 0.0 <= report["accuracy"] <= 1.0


def test_an_unregistered_method_is_bad_input_naming_the_registered_ones(make_recipe, tmp_path):
    result = build(make_recipe(), tmp_path / "out", "--set", f"quantize.method={TEST_METHOD}")
    assert result.exit_code == 2
    assert TEST_METHOD in result.output and "int8-dynamic" in result.output
