"""The float graph around a quantizer: transformer fusions before it, and which nodes it left float, and why."""

from __future__ import annotations

import collections
import shutil
from pathlib import Path

from edgetune.console import log
from edgetune.quantizers import Quantizer

# onnxruntime.transformers fusion types by Hugging Face model_type.
FUSION_MODEL_TYPES = {"bert": "bert", "roberta": "bert", "xlm-roberta": "bert", "distilbert": "bert",
                      "electra": "bert", "mpnet": "bert"}


def fuse(src: Path, dst: Path, config: dict, *, skip_layer_norm: bool, weight_only: bool = False) -> dict[str, int]:
    """Attention / LayerNorm / GELU fusions. Returns the fused-op counts, {} when the model type has none.

    skip_layer_norm: fuse each residual Add + LayerNormalization into SkipLayerNormalization (the target preset's
    quantization.fuse_skip_layer_norm); when False they stay apart, the Add written as Sum (see residual_adds_as_sum).
    weight_only: leave attention and the embeddings unfused (see quantizers.int4).
    """
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    kind = FUSION_MODEL_TYPES.get(config.get("model_type", ""))
    if kind is None:
        log(f"no transformer fusions for model type {config.get('model_type')!r}: quantizing the plain graph")
        shutil.copy(src, dst)
        fused = {}
    else:
        options = FusionOptions(kind)
        options.enable_skip_layer_norm = skip_layer_norm
        if weight_only:
            options.enable_attention = False
            options.enable_embed_layer_norm = False
        optimized = optimize_model(str(src), model_type=kind, num_heads=config.get("num_attention_heads", 0),
                                   hidden_size=config.get("hidden_size", 0), opt_level=0, optimization_options=options)
        optimized.save_model_to_file(str(dst))
        fused = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
    apart = 0 if skip_layer_norm else residual_adds_as_sum(dst)
    log(f"fusions: {', '.join(f'{k} x{v}' for k, v in fused.items()) or 'none matched'}"
        + (f"; {apart} residual Add + LayerNormalization pairs kept apart (Add as Sum)" if apart else ""))
    return fused | ({"residual_sum": apart} if apart else {})


def residual_adds_as_sum(path: Path, op_type: str = "Sum") -> int:
    """Write every Add whose output feeds a LayerNormalization as a two-input Sum (the same sum), in place; returns
    how many. onnxruntime fuses Add + LayerNormalization into SkipLayerNormalization whenever it opens a graph, and
    that CPU kernel is plain scalar C++ where LayerNormalization's is vectorized (the cost of each on short inputs:
    benchmarks/results/peers.md, "session options"). Its fusion matches Add only, so with a Sum every session that
    opens the model, edgetune's or a user's own, keeps the fast kernel without a session option to pass.
    op_type "Add" undoes it (the peers benchmark times the graph onnxruntime would have fused)."""
    import onnx

    model = onnx.load(str(path))
    feeds_layer_norm = {name for node in model.graph.node if node.op_type == "LayerNormalization" for name in node.input[:1]}
    rewritten = 0
    for node in model.graph.node:
        if (node.op_type in ("Add", "Sum") and node.op_type != op_type and node.domain in ("", "ai.onnx")
                and len(node.input) == 2 and node.output[0] in feeds_layer_norm):
            node.op_type = op_type
            rewritten += 1
    onnx.save(model, str(path))
    return rewritten


def float_weight(node, initializers: dict) -> str | None:
    """Name of the node's float initializer of rank >= 2 (its weight or embedding table), if it has one."""
    from onnx import TensorProto

    for name in node.input:
        tensor = initializers.get(name)
        if tensor is not None and len(tensor.dims) >= 2 and tensor.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16):
            return name
    return None


def compute_nodes(model) -> list:
    """Nodes that carry a float weight, plus activation x activation MatMuls (attention scores)."""
    initializers = {t.name: t for t in model.graph.initializer}
    return [n for n in model.graph.node if float_weight(n, initializers) or n.op_type == "MatMul"]


def quantizable(float_graph: Path, quantizer: Quantizer) -> list[tuple[str, str]]:
    """(name, op type) of the nodes the method quantizes: the candidates of the sensitivity ranking."""
    import onnx

    model = onnx.load(str(float_graph))
    initializers = {t.name: t for t in model.graph.initializer}
    return [(node.name, node.op_type) for node in compute_nodes(model)
            if node.name and quantizer.quantizes(node, float_weight(node, initializers))]


def stays_float(node, shipped: dict, producers: dict, initializers: dict) -> bool:
    """Whether `node` of the float graph is unchanged in the shipped graph: same name and op, float inputs."""
    from onnx import TensorProto

    twin = shipped.get(node.name) or shipped.get(f"{node.name}_MatMul")  # quantize_dynamic's Gemm -> MatMul + Add
    if twin is None or twin.op_type not in (node.op_type, "MatMul" if node.op_type == "Gemm" else node.op_type):
        return False
    for name in twin.input:
        if producers.get(name) == "DequantizeLinear":
            return False
        tensor = initializers.get(name)
        if tensor is not None and tensor.data_type not in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.INT64):
            return False
    return True


def describe_nodes(float_graph: Path, shipped_path: Path, quantizer: Quantizer,
                   kept: dict[str, str]) -> tuple[list[dict], dict[str, int]]:
    """(float compute nodes with the reason each stayed float, counts of quantized nodes by op type)."""
    import onnx

    model, shipped = onnx.load(str(float_graph)), onnx.load(str(shipped_path))
    by_name = {n.name: n for n in shipped.graph.node if n.name}
    producers = {o: n.op_type for n in shipped.graph.node for o in n.output}
    shipped_inits = {t.name: t for t in shipped.graph.initializer}
    initializers = {t.name: t for t in model.graph.initializer}
    floats, quantized = [], collections.Counter()
    for node in compute_nodes(model):
        if not stays_float(node, by_name, producers, shipped_inits):
            quantized[node.op_type] += 1
            continue
        floats.append({"node": node.name, "op_type": node.op_type,
                       "reason": _float_reason(node, float_weight(node, initializers), quantizer, kept)})
    return floats, dict(quantized)


def _float_reason(node, weight: str | None, quantizer: Quantizer, kept: dict[str, str]) -> str:
    if node.name in kept:
        return kept[node.name]
    if node.op_type not in quantizer.op_types():
        return quantizer.not_covered(node.op_type)
    if weight is None:
        return f"activation x activation {node.op_type}: {quantizer.name} quantizes constant weights only"
    return "onnxruntime left it float"


def summary_note(quantizer: Quantizer, calibration: str | None, quantized: dict[str, int], floats: list[dict]) -> str:
    """One line for quantize.json and the log: what was done, on what, and what stayed float and why."""
    parts = [quantizer.describe()]
    if not quantizer.changes_graph:
        return parts[0]
    if calibration:
        parts.append(f"calibrated on {calibration}")
    parts.append("quantized " + ", ".join(f"{v} {k}" for k, v in sorted(quantized.items())) if quantized else "nothing quantized")
    reasons: dict[str, list[str]] = {}
    for f in floats:
        reasons.setdefault(f["reason"].split(":")[0] if f["reason"].startswith("accuracy-aware") else f["reason"],
                           []).append(f["op_type"])
    for reason, ops in reasons.items():
        parts.append(f"float: {len(ops)} {'/'.join(sorted(set(ops)))} ({reason})")
    return "; ".join(parts)
