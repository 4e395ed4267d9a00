"""benchmarks/peers/run.py without the peers: its graph reading, error lines, Olive config, timing run and result text.

The peers themselves (optimum-cli, Olive) live in their own venv and take minutes per model; the script's end-to-end
run is the benchmark, not a test. These check the parts that decide what the results say.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from tiny_bundle import SMART_HOME, make_bundle

RUN = Path(__file__).resolve().parent.parent / "benchmarks" / "peers" / "run.py"


@pytest.fixture(scope="module")
def peers():
    spec = importlib.util.spec_from_file_location("peers_run", RUN)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_error_line_keeps_a_pydantic_heading_with_its_detail(peers):
    output = ("INFO starting\nTraceback (most recent call last):\n  File x\n"
              "pydantic_core._pydantic_core.ValidationError: 1 validation error for DataConfig\nname\n"
              "  Value error, DataConfig name /w/calibration should only contain letters\n  For further information\n")
    line = peers.error_line(output)
    assert "1 validation error for DataConfig" in line and "should only contain letters" in line
    assert peers.error_line("RuntimeError: Unable to find data type for weight_name='x'. " + "y" * 90) \
        .startswith("RuntimeError: Unable to find data type")
    assert peers.error_line("") == "(no output)"


def test_olive_static_config_names_its_data_config_as_olive_requires(peers, tmp_path):
    config = peers.olive_config(tmp_path / "model", tmp_path / "out", tmp_path / "calibration.csv", 32)
    (data,) = config["data_configs"]
    # Olive reads a name that is also a folder in its working directory as that folder's path: the repository has
    # a calibration/ folder, so the name must not be "calibration".
    assert data["name"].replace("_", "").isalnum() and data["name"] != "calibration"
    assert config["passes"]["quantization"] == {"type": "OnnxStaticQuantization", "data_config": data["name"],
                                                "quant_format": "QDQ"}
    dynamic = peers.olive_config(tmp_path / "model", tmp_path / "out", None, 32)
    assert dynamic["data_configs"] == [] and dynamic["passes"]["quantization"]["type"] == "OnnxDynamicQuantization"
    assert dynamic["passes"]["transformers_optimization"]["type"] == "OrtTransformersOptimization"


@pytest.mark.parametrize("quantize", [False, True])
def test_graph_ops_counts_the_graph_onnxruntime_runs(peers, tmp_path, quantize):
    bundle = make_bundle(tmp_path / "bundle", quantize=quantize)
    ops = peers.graph_ops(bundle / "model.onnx")
    assert ops["file"]["nodes"] > 0 and ops["ran"]["nodes"] > 0
    assert bool(ops["file"]["quantized"]) == quantize
    assert not list(bundle.glob(".*ort-optimized*"))  # the dumped graph is removed
    assert peers.model_bytes(bundle / "model.onnx") == (bundle / "model.onnx").stat().st_size


def row(tool, base, variant, accuracy, p95, size, ratio=None):
    r = {"tool": tool, "base": base, "variant": variant, "accuracy": accuracy, "macro_f1": accuracy - 0.01,
         "p50": p95 / 2, "p50_ci": [p95 / 2.1, p95 / 1.9], "p95": p95, "threads": 2, "p95_ci": [p95 * 0.95, p95 * 1.05],
         "size_bytes": size, "graph": {"ran": {"fused": {"Attention": 2}, "quantized": {"MatMulInteger": 4}}}}
    if ratio:
        r["p95_vs_shipped"] = {"ratio": ratio[0], "ci": list(ratio[1:])}
    return r


def test_verdicts_say_which_wins_on_what(peers):
    rows = {
        "student: edgetune shipped": row("edgetune", "student", "edgetune shipped", 0.918, 1.0, 16e6),
        "student: olive dynamic int8": row("olive", "student", "olive dynamic int8", 0.919, 1.2, 16e6, (1.2, 1.1, 1.3)),
        "teacher: olive dynamic int8": row("olive", "teacher", "olive dynamic int8", 0.926, 3.0, 110e6, (3.0, 2.8, 3.2)),
        "teacher: optimum fp32": row("optimum-cli", "teacher", "optimum fp32", 0.927, 6.0, 440e6, (6.0, 5.5, 6.5)),
        "teacher: optimum int8 avx2": row("optimum-cli", "teacher", "optimum int8 avx2", 0.925, 4.0, 110e6, (4.0, 3.7, 4.3)),
    }
    same, olive, optimum = peers.verdicts(rows)
    # shipped/peer = 1/1.2 = 0.83, interval [1/1.3, 1/1.1] = [0.77, 0.91]: upper bound above 0.9, and less accurate.
    assert "fastest peer variant is olive dynamic int8" in same and "0.83 [0.77, 0.91]" in same
    assert "does not meet" in same and "accuracy unpaired" in same
    assert "olive's best teacher variant (olive dynamic int8" in olive and "0.80 points less accurate" in olive
    assert "the peer wins on accuracy" in olive
    # optimum's best: the fastest within 0.5 points of its most accurate variant (int8 at 0.925 vs fp32 at 0.927).
    assert "optimum-cli's best teacher variant (optimum int8 avx2" in optimum and "4.0x faster" in optimum


@pytest.mark.parametrize("ratio, paired, verdict", [
    ((1.3, 1.2, 1.4), {"gain": 0.001, "ci": [-0.004, 0.006]}, "equal (meets"),  # interval holds 0: equal accuracy
    ((1.3, 1.2, 1.4), {"gain": 0.006, "ci": [0.002, 0.010]}, "worse (does not meet"),  # the peer is surely better
    ((1.3, 1.2, 1.4), {"gain": -0.002, "ci": [-0.006, 0.001]}, "better (meets"),
    ((1.3, 1.2, 1.4), {"gain": 0.0, "ci": [0.0, 0.0]}, "equal (meets"),  # the same answers on every text
    ((1.2, 1.1, 1.3), {"gain": -0.002, "ci": [-0.006, 0.001]}, "better (does not meet"),  # upper bound 1/1.1 > 0.9
])
def test_same_student_bar_takes_the_p95_upper_bound_and_the_paired_accuracy_interval(peers, ratio, paired, verdict):
    rows = {"student: edgetune shipped": row("edgetune", "student", "edgetune shipped", 0.918, 1.0, 16e6),
            "student: olive dynamic int8": row("olive", "student", "olive dynamic int8", 0.919, 1.3, 16e6, ratio)}
    rows["student: olive dynamic int8"]["accuracy_vs_shipped"] = {**paired, "only_a_right": 9, "only_b_right": 6}
    (same,) = peers.verdicts(rows)
    assert verdict in same and "(6 texts only shipped gets right, 9 only the peer)" in same


def test_markdown_has_no_machine_paths(peers):
    rows = {"student: edgetune shipped": row("edgetune", "student", "edgetune shipped", 0.9, 1.0, 16e6),
            "student: optimum fp32": row("optimum-cli", "student", "optimum fp32", 0.9, 2.0, 60e6, (2.0, 1.9, 2.1))}
    for r in rows.values():
        r["graph"]["ran"] = {"fused": {}, "quantized": {}}
    result = {"measured": "2026-12-02 18:00 UTC", "plot": "peers-x.png", "verdicts": ["v"], "session_study": None,
              "build": {"out": "../runs/x", "target": "x86-avx2", "data": "../shared/data/x", "test_file": "../shared/data/x/test.csv",
                        "teacher_layers": 6, "student_layers": 2},
              "host": {"cpu": "AMD EPYC", "arch": "x86_64", "cores": 2, "flags": ["avx2"], "threads": 2,
                       "edgetune_venv": {"onnxruntime": "1.32.0"}, "peers_venv": {"optimum-onnx": "0.1.0"}},
              "comparison": {"rows": rows, "timing": {"threads": 2, "max_length": 32, "test_texts": 10, "wall_s": 1.0,
                                                      "stopped_because": "x", "loadavg_before": [1.0], "loadavg_after": [1.0]}},
              "failures": [{"base": "teacher", "variant": "optimum O2+int8 avx2", "command": "optimum-cli onnxruntime quantize",
                            "error": "exit 1: RuntimeError: boom", "workaround": None}]}
    text = peers.markdown({"x": result})
    assert "/work/" not in text and "/tmp/" not in text
    assert "`exit 1: RuntimeError: boom`. No workaround known." in text
    assert "| student | edgetune | **edgetune shipped** |" in text
    json.dumps(result)  # what peers.json holds must serialise


def test_compare_scores_and_times_every_model_on_the_runtime(peers, tmp_path):
    """The timing run on tiny bundles: a shipped model, the preset's thread count beside it, and one peer variant."""
    from edgetune import bundle_predict

    shipped = make_bundle(tmp_path / "out" / "x86-avx2" / "bundle", quantize=True)
    peer = make_bundle(tmp_path / "work" / "export-0" / "optimum-fp32")
    labels = json.loads((shipped / "labels.json").read_text())
    test_file = SMART_HOME / "test.csv"
    # compare reads the bundle, the test split and the truncations; the teacher and student folders are the peers' inputs.
    build = peers.Build(label="tiny", out=tmp_path / "out", target="x86-avx2", data=SMART_HOME, teacher=None,
                        student=None, shipped=shipped, max_length=32, test_file=test_file, student_layers=1,
                        teacher_layers=1, teacher_max_length=32)
    variant = peers.Variant("optimum fp32", "optimum-cli", "student", peer / "model.onnx", peer, labels)
    result = peers.compare(build, [variant], threads=2, preset_threads=1, seconds=0.5)
    texts, truth = peers.read_split(test_file)
    rows, timing = result["rows"], result["timing"]
    assert set(rows) == {"student: edgetune shipped", "student: edgetune shipped, preset 1 thread",
                         "student: optimum fp32"}
    assert rows["student: edgetune shipped, preset 1 thread"]["threads"] == 1
    assert rows["student: optimum fp32"]["threads"] == 2 == timing["threads"]
    for row in rows.values():
        assert row["runs"] >= len(texts) == timing["test_texts"]  # every test text ran at least once
        assert row["p50"] <= row["p95"] and row["p95_ci"][0] <= row["p95"] <= row["p95_ci"][1]
        assert 1 <= row["median_tokens"] <= 32
        assert "predictions" not in row
    # Scored as the bundle's own predict.py classifies the test split.
    predicted = [label for label, _ in bundle_predict.predict(texts, *bundle_predict.load(shipped))]
    assert rows["student: edgetune shipped"]["accuracy"] == pytest.approx(
        sum(p == t for p, t in zip(predicted, truth)) / len(texts))
    peer_row = rows["student: optimum fp32"]
    for reference in ("shipped", "preset"):
        ratio = peer_row[f"p95_vs_{reference}"]
        assert ratio["ci"][0] <= ratio["ratio"] <= ratio["ci"][1]
    assert 0 <= peer_row["agreement_with_shipped"] <= 1
    paired = peer_row["accuracy_vs_shipped"]  # the peer's accuracy minus the shipped model's, text by text
    assert paired["gain"] == pytest.approx(peer_row["accuracy"] - rows["student: edgetune shipped"]["accuracy"])
    assert paired["ci"][0] <= paired["gain"] <= paired["ci"][1]
    json.dumps(result)  # what peers.json holds must serialise


def test_a_peer_model_that_fails_at_inference_is_a_recorded_failure_not_a_crash(peers, tmp_path):
    """A tool can exit 0 with a model that fails at its first inference (out-of-range Gather indices here, as Olive's
    static int8 of MPNet gives): compare records the runtime's error line for it and times the rest."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    shipped = make_bundle(tmp_path / "out" / "x86-avx2" / "bundle", quantize=True)
    broken = make_bundle(tmp_path / "work" / "export-0" / "olive-static-int8")
    model = onnx.load(broken / "model.onnx")
    gathered = {node.input[0] for node in model.graph.node if node.op_type == "Gather"}
    table = next(t for t in model.graph.initializer if t.name in gathered and len(t.dims) == 2)
    table.CopyFrom(numpy_helper.from_array(np.zeros((2, table.dims[1]), np.float32), table.name))  # 2-word vocabulary
    onnx.save(model, broken / "model.onnx")
    labels = json.loads((shipped / "labels.json").read_text())
    build = peers.Build(label="tiny", out=tmp_path / "out", target="x86-avx2", data=SMART_HOME, teacher=None,
                        student=None, shipped=shipped, max_length=32, test_file=SMART_HOME / "test.csv",
                        student_layers=1, teacher_layers=1, teacher_max_length=32)
    variant = peers.Variant("olive static int8", "olive", "student", broken / "model.onnx", broken, labels)
    result = peers.compare(build, [variant], threads=1, preset_threads=1, seconds=0.5)
    assert set(result["rows"]) == {"student: edgetune shipped"}
    assert variant.error.startswith("fails at inference: ") and "Gather" in variant.error
    assert peers.failures([variant])[0]["error"] == variant.error
