"""Roofline latency estimates: FLOP and byte counts from the ONNX graph, the calibration on this host, the labels."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from edgetune import roofline
from edgetune.errors import BadInput
from edgetune.roofline import Peaks, estimate_latency, op_costs
from edgetune.targets import PeakCompute, known_targets, load_target
from tiny_bundle import make_bundle

HIDDEN, FFN = 64, 256


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("roofline")
    return make_bundle(root / "fp32", hidden=HIDDEN, ffn=FFN), make_bundle(root / "int8", hidden=HIDDEN, ffn=FFN, quantize=True)


def by_name(costs):
    return {c["name"]: c for c in costs}


def test_matmul_flops_and_gather_bytes_follow_the_shapes(bundles):
    fp32, _ = bundles
    classes = len(json.loads((fp32 / "labels.json").read_text()))
    for batch, seq in ((1, 16), (2, 40)):
        costs = op_costs(fp32 / "model.onnx", batch, seq)
        matmuls = [c for c in costs if c["op"] == "MatMul"]
        assert sorted(c["flops"] for c in matmuls) == sorted([2.0 * batch * seq * HIDDEN * FFN, 2.0 * batch * seq * FFN * HIDDEN,
                                                              2.0 * batch * HIDDEN * classes])
        assert all(c["precision"] == "fp32" for c in matmuls)
        gather = next(c for c in costs if c["op"] == "Gather")
        assert gather["bytes"] == 2 * batch * seq * HIDDEN * 4 + batch * seq * 8  # rows read and written, ids
        assert all(c["bytes"] == 0 for c in costs if c["op"] == "Unsqueeze")


def test_integer_matmuls_count_as_int8(bundles):
    _, int8 = bundles
    costs = op_costs(int8 / "model.onnx", 1, 16)
    integer = [c for c in costs if c["op"] == "MatMulInteger"]
    assert integer and all(c["precision"] == "int8" for c in integer)
    assert sum(c["flops"] for c in integer) >= 2.0 * 16 * HIDDEN * FFN * 2


def test_estimate_is_the_measurement_scaled_by_the_two_rooflines(bundles):
    fp32, _ = bundles
    same = Peaks(fp32=100.0, int8=400.0, bandwidth=20.0, source="test")
    target = replace(load_target("rpi5"), threads=2, cores=2, sequence_length=None,
                     peak_gflops=PeakCompute(fp32=100.0, int8=400.0), memory_bandwidth_gbs=20.0)
    measured = {"p50": 1.0, "p95": 2.0, "mean": 1.2, "threads": 2, "batch_size": 1,
                "sequence_length": {"min": 5, "median": 12.0, "max": 30}}
    est = estimate_latency(fp32 / "model.onnx", target, measured, host=same)
    assert est["scale"] == pytest.approx(1.0) and est["p50_ms"] == pytest.approx(1.0) and est["p95_ms"] == pytest.approx(2.0)
    assert est["at"] == {"batch_size": 1, "sequence_length": 12, "threads": 2}

    faster = replace(target, peak_gflops=PeakCompute(fp32=200.0, int8=800.0), memory_bandwidth_gbs=40.0)
    est = estimate_latency(fp32 / "model.onnx", faster, measured, host=same)
    assert est["scale"] == pytest.approx(0.5) and est["p95_ms"] == pytest.approx(1.0)

    longer = estimate_latency(fp32 / "model.onnx", replace(target, sequence_length=64), measured, host=same)
    assert longer["p50_ms"] > 1.0 and longer["at"]["sequence_length"] == 64

    half = estimate_latency(fp32 / "model.onnx", replace(target, threads=1), measured, host=same)
    assert half["target_peaks"]["fp32_gflops"] == pytest.approx(50.0)  # the profile's peak is for all its cores


def test_estimate_is_labelled_and_keeps_apart_from_measured_fields(bundles):
    _, int8 = bundles
    est = estimate_latency(int8 / "model.onnx", load_target("rpi5"),
                           {"p50": 0.5, "p95": 0.7, "threads": 2, "batch_size": 1, "sequence_length": 10},
                           host=Peaks(50.0, 300.0, 20.0, "test"))
    assert est["kind"] == "estimate" and est["note"].startswith("ESTIMATE")
    assert len(est["assumptions"]) >= 4 and "targets/rpi5.yaml" in est["target_peaks"]["source"]
    assert not {"latency_ms", "p95", "p50", "runs", "samples"} & set(est)
    assert est["graph"]["gop_int8"] > 0 and 0 <= est["graph"]["compute_bound_share"] <= 1
    json.dumps(est)  # goes into report.json as it is


def test_profile_without_peaks_is_bad_input(bundles):
    fp32, _ = bundles
    bare = replace(load_target("rpi5"), peak_gflops=PeakCompute(), memory_bandwidth_gbs=None)
    with pytest.raises(BadInput, match="peak_gflops"):
        estimate_latency(fp32 / "model.onnx", bare, {"p50": 1, "p95": 1, "threads": 1, "batch_size": 1, "sequence_length": 8},
                         host=Peaks(1, 1, 1, "test"))
    with pytest.raises(BadInput, match="threads"):
        estimate_latency(fp32 / "model.onnx", load_target("rpi5"), {"p50": 1, "p95": 1}, host=Peaks(1, 1, 1, "test"))


def test_host_peaks_are_measured_once_and_scaled_by_threads(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setenv("EDGETUNE_CACHE", str(tmp_path))
    monkeypatch.setattr(roofline, "measure_host_peaks", lambda: calls.append(1) or
                        {"fp32_gflops_per_core": 40.0, "int8_gops_per_core": 160.0, "bandwidth_gbs": 15.0})
    one, two = roofline.host_peaks(1), roofline.host_peaks(2)
    assert len(calls) == 1 and (tmp_path / "host-peaks.json").exists()
    assert (one.fp32, two.fp32, two.int8, two.bandwidth) == (40.0, 80.0, 320.0, 15.0)
    assert "measured on this host" in two.source


def test_measured_host_peaks_are_plausible():
    peaks = roofline.measure_host_peaks()
    assert 0.5 < peaks["fp32_gflops_per_core"] < 1000 and 0.5 < peaks["int8_gops_per_core"] < 5000
    assert 0.5 < peaks["bandwidth_gbs"] < 1000


def test_every_shipped_target_has_sourced_peaks():
    for name, path in known_targets().items():
        target = load_target(name)
        assert target.peak_gflops.fp32 and target.peak_gflops.int8 and target.memory_bandwidth_gbs, name
        text = path.read_text()
        for key in ("fp32:", "int8:", "memory_bandwidth_gbs:"):
            line = next(line for line in text.splitlines() if line.strip().startswith(key))
            assert "#" in line, f"{path}: '{key}' needs a comment giving its source"
    rpi5 = load_target("rpi5")
    assert (rpi5.peak_gflops.fp32, rpi5.memory_bandwidth_gbs, rpi5.cpu) == (153.6, 17.1, "cortex-a76")
