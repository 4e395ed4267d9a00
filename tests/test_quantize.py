"""Every quantization method on the tiny model: it builds, ships the right kind of graph, and is measured."""

from __future__ import annotations

import json
import shutil

import pytest

from helpers import CALIBRATION, build, cache_entries, stage_statuses

METHODS = {
    "int8-dynamic": (),  # the shared build's method
    "int8-static": ("--set", "quantize.method=int8-static", "--set", f"quantize.calibration={CALIBRATION}"),
    "int4": ("--set", "quantize.method=int4", "--set", "quantize.block_size=16"),
    "none": ("--set", "quantize.method=none"),
}


@pytest.fixture(scope="module")
def quantized(base_build, tmp_path_factory):
    """quantized(method) -> the out folder of a build with that method (each built once, on a copy)."""
    outs = {"int8-dynamic": base_build.out}

    def get(method: str):
        if method not in outs:
            out = tmp_path_factory.mktemp(f"quantize-{method}") / "out"
            shutil.copytree(base_build.out, out)
            result = build(base_build.recipe, out, *METHODS[method])
            assert result.exit_code == 0, result.output
            assert stage_statuses(result.output)["quantize"] == "built"
            assert stage_statuses(result.output)["export"] == "cached"
            outs[method] = out
        return outs[method]

    return get


def report_of(out) -> dict:
    return json.loads((out / "rpi5" / "report.json").read_text())


def op_types(out) -> set[str]:
    import onnx

    model = onnx.load(str(out / "rpi5" / "bundle" / "model.onnx"))
    return {node.op_type for node in model.graph.node}


@pytest.mark.parametrize("method", list(METHODS))
def test_method_builds_and_reports_its_size(quantized, method):
    out = quantized(method)
    report = report_of(out)
    assert report["quantization"] == method
    assert report["size_bytes"] == (out / "rpi5" / "bundle" / "model.onnx").stat().st_size > 0
    assert 0.0 <= report["accuracy"] <= 1.0
    assert report["latency_ms"]["runs"] >= 50


@pytest.mark.parametrize("method", list(METHODS))
def test_method_adds_exactly_one_quantize_entry(quantized, base_build, method):
    quantize_entries = {n for n in cache_entries(quantized(method)) if n.startswith("quantize-")}
    assert len(quantize_entries) == (1 if method == "int8-dynamic" else 2)
    assert cache_entries(base_build.out) <= cache_entries(quantized(method))


def test_int8_dynamic_graph_has_integer_matmuls(quantized):
    ops = op_types(quantized("int8-dynamic"))
    assert ops & {"MatMulInteger", "DynamicQuantizeMatMul", "DynamicQuantizeLinear"}, ops


def test_int8_static_graph_has_quantize_dequantize_pairs(quantized):
    ops = op_types(quantized("int8-static"))
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops, ops


def test_int4_graph_has_blockwise_4bit_matmuls(quantized):
    assert "MatMulNBits" in op_types(quantized("int4"))


def test_none_ships_a_float_graph(quantized):
    ops = op_types(quantized("none"))
    assert not ops & {"MatMulInteger", "DynamicQuantizeLinear", "QuantizeLinear", "MatMulNBits"}, ops


def test_int8_dynamic_model_is_smaller_than_unquantized(quantized):
    assert report_of(quantized("int8-dynamic"))["size_bytes"] < report_of(quantized("none"))["size_bytes"]


def test_unquantized_model_computes_the_same_logits_as_the_fp32_export(quantized):
    """Graph fusions alone must not change the model: `none` matches the export's logits on real inputs."""
    import numpy as np
    import onnxruntime as ort

    from edgetune import bundle_predict, runtime

    out = quantized("none")
    (export,) = [out / "cache" / n for n in cache_entries(out) if n.startswith("export-")]
    tokenizer, fused, _ = bundle_predict.load(out / "rpi5" / "bundle")
    fp32 = ort.InferenceSession(str(export / "model.onnx"), providers=["CPUExecutionProvider"])
    texts = ["turn off the kitchen lights", "set a timer for ten minutes", "what's the weather tomorrow"]
    feed = runtime.encode(texts, tokenizer, fused)
    np.testing.assert_allclose(fused.run(None, feed)[0], fp32.run(None, feed)[0], atol=1e-4)


def optimized_ops(model_path, tmp_path) -> dict[str, int]:
    """Op counts of the graph onnxruntime runs after its own session-time fusions."""
    import collections

    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    return collections.Counter(n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node)


@pytest.mark.parametrize("method", ["int8-dynamic", "none"])
def test_cpu_preset_keeps_layer_norm_apart_from_the_residual_add_in_every_session(quantized, method, tmp_path):
    """rpi5's preset (fuse_skip_layer_norm false): residual sums as Sum, which onnxruntime's session-time
    SkipLayerNormFusion leaves alone, so a plain session (no edgetune options) runs LayerNormalization."""
    import onnx

    bundle_model = quantized(method) / "rpi5" / "bundle" / "model.onnx"
    graph = onnx.load(str(bundle_model)).graph
    layer_norm_inputs = {n.input[0] for n in graph.node if n.op_type == "LayerNormalization"}
    assert layer_norm_inputs and layer_norm_inputs <= {o for n in graph.node if n.op_type == "Sum" for o in n.output}
    ops = optimized_ops(bundle_model, tmp_path)
    assert "SkipLayerNormalization" not in ops and ops["LayerNormalization"] == len(layer_norm_inputs), ops


def test_fuse_skip_layer_norm_true_fuses_and_both_layouts_compute_the_same_logits(base_build, tmp_path):
    import numpy as np
    import onnx

    from edgetune import runtime
    from edgetune.quantizers.graph import fuse

    (export,) = [base_build.out / "cache" / n for n in cache_entries(base_build.out) if n.startswith("export-")]
    config = json.loads((export / "merged" / "config.json").read_text())
    counts = {flag: fuse(export / "model.onnx", tmp_path / f"{flag}.onnx", config, skip_layer_norm=flag)
              for flag in (True, False)}
    assert counts[True]["SkipLayerNormalization"] == counts[False]["residual_sum"] > 0
    assert not any(n.op_type == "Sum" for n in onnx.load(str(tmp_path / "True.onnx")).graph.node)
    tokenizer = runtime.load_tokenizer(base_build.out / "rpi5" / "bundle")
    texts = ["turn off the kitchen lights", "set a timer for ten minutes", "what's the weather tomorrow"]
    fused, split = (runtime.logits(texts, tokenizer, runtime.open_session(tmp_path / f"{flag}.onnx"))
                    for flag in (True, False))
    np.testing.assert_allclose(fused, split, atol=1e-5)
