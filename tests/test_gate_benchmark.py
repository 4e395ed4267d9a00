"""benchmarks/gate/run.py's slowed-down candidate: a bundle the gate accepts as intact, predicting the same labels."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

RUN = Path(__file__).resolve().parents[1] / "benchmarks" / "gate" / "run.py"


def test_extra_dense_candidate_is_an_intact_bundle_with_the_baselines_predictions(base_build, tmp_path):
    spec = importlib.util.spec_from_file_location("gate_bench_run", RUN)
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    from edgetune import gate

    baseline = base_build.out / "rpi5"
    candidate = bench.extra_dense(baseline, tmp_path / "rpi5")
    gate.load_build(candidate, "candidate")  # GateError when the manifest does not describe the changed model
    assert (candidate / "bundle" / "model.onnx").read_bytes() != (baseline / "bundle" / "model.onnx").read_bytes()
    assert bench.same_predictions(baseline, candidate)
