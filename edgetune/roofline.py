"""Latency ESTIMATES for a target that is neither at hand nor reachable: a per-op roofline, calibrated on this host.

For every node of the ONNX graph (shapes from onnxruntime's symbolic shape inference at the batch size and sequence
length in question) count FLOPs (MatMul/Gemm/attention and their int8/int4 forms: 2*M*N*K; a few FLOPs per element
elsewhere) and bytes moved (inputs + outputs; the rows an embedding Gather reads, not its whole table; views such
as Reshape cost nothing). A node's roofline time is max(FLOPs / peak compute, bytes / memory bandwidth), with the
int8 peak for integer matmuls and the fp32 peak otherwise; the model's is the sum.

Absolute rooflines are optimistic (dispatch overhead, cache effects, imperfect kernels), so the estimate is
relative:  estimate = (latency measured on this host) x (target roofline) / (this host's roofline),  i.e. the
host's efficiency against its own roofline is assumed to carry over to the target. Target peaks come from the
profile (targets/*.yaml, datasheet numbers with their sources); this host's are measured once (onnxruntime MatMul
and MatMulInteger on one thread, a numpy copy for bandwidth) and cached. The result is always labelled an
estimate with its assumptions, and belongs under `estimate` in report.json, never among measured fields.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgetune.errors import BadInput
from edgetune.targets import Target

INT8_MATMULS = {"MatMulInteger", "QLinearMatMul", "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "QGemm"}
FLOAT_MATMULS = {"MatMul", "FusedMatMul", "Gemm"}
ATTENTION = {"Attention", "QAttention", "MultiHeadAttention"}
FREE = {"Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Shape", "Constant", "ConstantOfShape", "Size"}
# FLOPs per output element for the non-matmul ops worth counting (exp/erf/tanh cost several).
ELEMENT_FLOPS = {"Softmax": 5, "LayerNormalization": 8, "SkipLayerNormalization": 9, "SimplifiedLayerNormalization": 6,
                 "SkipSimplifiedLayerNormalization": 7, "BiasGelu": 8, "Gelu": 8, "FastGelu": 8, "Erf": 8, "Tanh": 8,
                 "Sigmoid": 4, "Exp": 4, "DynamicQuantizeLinear": 4, "QuantizeLinear": 2, "DequantizeLinear": 2}
DTYPE_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2, 21: 1, 22: 1}


@dataclass(frozen=True)
class Peaks:
    """A machine's peaks as used for `threads` threads: GFLOP/s (fp32), GOP/s (int8), GB/s."""

    fp32: float
    int8: float
    bandwidth: float
    source: str

    def seconds(self, flops: float, precision: str, nbytes: float) -> tuple[float, str]:
        compute = flops / ((self.int8 if precision == "int8" else self.fp32) * 1e9)
        memory = nbytes / (self.bandwidth * 1e9)
        return (compute, "compute") if compute >= memory else (memory, "memory")


# --- the graph ----------------------------------------------------------------------------------------------

def op_costs(model_path: Path, batch_size: int, sequence_length: int) -> list[dict]:
    """[{name, op, flops, bytes, precision}] for every node, at the given input shape."""
    import onnx
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    model = onnx.load(str(model_path))
    inits = {i.name: i for i in model.graph.initializer}
    for value in model.graph.input:
        if value.name in inits:
            continue
        dims = value.type.tensor_type.shape.dim
        for i, dim in enumerate(dims):
            if not dim.HasField("dim_value"):
                dim.Clear()
                dim.dim_value = batch_size if i == 0 else sequence_length
    try:
        inferred = SymbolicShapeInference.infer_shapes(model, auto_merge=True, guess_output_rank=True)
    except Exception as err:  # symbolic inference raises bare Exceptions on graphs it cannot follow
        raise BadInput(f"{model_path}: onnxruntime shape inference failed ({err}); no roofline estimate for it") from None

    shapes: dict[str, tuple[list[int], int]] = {}
    for value in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        t = value.type.tensor_type
        if t.HasField("shape"):
            shapes[value.name] = ([d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim], t.elem_type)
    for init in inferred.graph.initializer:
        shapes[init.name] = (list(init.dims), init.data_type)
    producers = {out: node for node in inferred.graph.node for out in node.output}
    # DequantizeLinear of a weight (QDQ models): onnxruntime folds it into the consuming kernel at load time, so it
    # costs nothing per inference and its consumers read the int8 weight, not a float copy.
    folded = {n.output[0]: n.input[0] for n in inferred.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits}

    def numel(name):
        dims = shapes.get(name, ([-1], 1))[0]
        return int(np.prod(dims)) if all(d >= 0 for d in dims) else 0

    def nbytes(name):
        name = folded.get(name, name)
        return numel(name) * DTYPE_BYTES.get(shapes.get(name, ([], 1))[1], 4) if name else 0

    def dims(name):
        return shapes.get(name, ([], 1))[0]

    costs = []
    for node in inferred.graph.node:
        op, ins, outs = node.op_type, list(node.input), list(node.output)
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        precision, flops = "fp32", 0.0
        moved = sum(nbytes(i) for i in ins) + sum(nbytes(o) for o in outs)
        if op in FREE or (op == "DequantizeLinear" and outs[0] in folded):
            moved = 0
        elif op in INT8_MATMULS or op in FLOAT_MATMULS:
            a = dims(ins[0])
            k = (a[-2] if attrs.get("transA") else a[-1]) if a else 0
            flops = 2.0 * numel(outs[0]) * max(k, 0)
            weight = dims(folded.get(ins[1], ins[1]))
            if flops <= 0 and len(weight) == 2 and min(weight) > 0:  # shapes lost after a contrib op
                flops = 2.0 * batch_size * sequence_length * weight[0] * weight[1]
            dequantized = all(producers.get(i) is not None and producers[i].op_type == "DequantizeLinear" for i in ins[:2])
            precision = "int8" if op in INT8_MATMULS or dequantized else "fp32"
        elif op == "MatMulNBits":
            rows = numel(ins[0]) // max(attrs["K"], 1)
            flops = 2.0 * rows * attrs["K"] * attrs["N"]
            precision = "int8" if attrs.get("accuracy_level", 0) == 4 else "fp32"
        elif op in ATTENTION:
            # Shape inference leaves contrib-op shapes symbolic or wrong: take the runtime batch and length,
            # the width from the weight.
            b, s = batch_size, sequence_length
            hidden_in = (dims(ins[0]) + [0, 0, 0])[2]
            hidden_in = hidden_in if hidden_in > 0 else max((dims(ins[1]) or [0])[0], 0)
            if op == "MultiHeadAttention":
                flops = 4.0 * b * s * s * hidden_in
            else:
                qkv = dims(ins[1])[-1] if dims(ins[1]) else 3 * hidden_in
                flops = 2.0 * b * s * hidden_in * qkv + 4.0 * b * s * s * (qkv // 3)
                precision = "int8" if op == "QAttention" else "fp32"
        elif op in ("EmbedLayerNormalization", "QEmbedLayerNormalization"):
            moved = 3 * nbytes(outs[0])  # reads the looked-up rows (word, position, segment), writes one output
            flops = float(ELEMENT_FLOPS.get("LayerNormalization", 8) * numel(outs[0]))
        elif op == "Gather" and (ins[0] in inits or ins[0] in folded):
            moved = 2 * nbytes(outs[0]) + nbytes(ins[1])  # the rows it reads, not the whole table
        else:
            flops = float(ELEMENT_FLOPS.get(op, 1) * sum(numel(o) for o in outs))
        costs.append({"name": node.name or outs[0], "op": op, "flops": flops, "bytes": float(moved), "precision": precision})
    return costs


def roofline_ms(costs: list[dict], peaks: Peaks) -> tuple[float, list[dict]]:
    timed = []
    for c in costs:
        seconds, bound = peaks.seconds(c["flops"], c["precision"], c["bytes"])
        timed.append(c | {"ms": seconds * 1e3, "bound": bound})
    return sum(t["ms"] for t in timed), timed


# --- peaks --------------------------------------------------------------------------------------------------

def target_peaks(target: Target, threads: int) -> Peaks:
    p = target.peak_gflops
    if p.fp32 is None or target.memory_bandwidth_gbs is None:
        raise BadInput(f"target {target.name} has no peak_gflops.fp32 / memory_bandwidth_gbs in "
                       f"{target.source or 'its profile'}; add them (datasheet numbers) to estimate its latency")
    share = min(threads, target.cores) / target.cores  # the profile's peak is the whole chip's
    return Peaks(p.fp32 * share, (p.int8 or p.fp32) * share, target.memory_bandwidth_gbs,
                 f"{target.source or target.name}: peak_gflops x {min(threads, target.cores)}/{target.cores} cores, memory_bandwidth_gbs")


def _cache_file() -> Path:
    return Path(os.environ.get("EDGETUNE_CACHE", "~/.cache/edgetune")).expanduser() / "host-peaks.json"


def measure_host_peaks() -> dict:
    """Per-core fp32 GFLOP/s and int8 GOP/s of onnxruntime's own GEMM kernels, and copy bandwidth (best of a few
    short runs: on a shared machine the best run is the closest to the hardware). About 2 s."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from edgetune import runtime

    def best_rate(op, a_type, b_type, a, b, work):
        graph = helper.make_graph(
            [helper.make_node(op, ["a", "b"], ["y"])], "peak",
            [helper.make_tensor_value_info("a", a_type, list(a.shape)), helper.make_tensor_value_info("b", b_type, list(b.shape))],
            [helper.make_tensor_value_info("y", TensorProto.INT32 if op == "MatMulInteger" else TensorProto.FLOAT, None)])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        session = ort.InferenceSession(model.SerializeToString(), runtime.session_options(1),
                                       providers=["CPUExecutionProvider"])
        session.run(None, {"a": a, "b": b})
        best = float("inf")
        for _ in range(7):
            t0 = time.perf_counter()
            session.run(None, {"a": a, "b": b})
            best = min(best, time.perf_counter() - t0)
        return work / best / 1e9

    rng = np.random.default_rng(0)
    m, k, n = 256, 1024, 1024
    fp32 = best_rate("MatMul", TensorProto.FLOAT, TensorProto.FLOAT, rng.standard_normal((m, k), dtype=np.float32),
                     rng.standard_normal((k, n), dtype=np.float32), 2 * m * k * n)
    int8 = best_rate("MatMulInteger", TensorProto.UINT8, TensorProto.INT8, rng.integers(0, 255, (m, k), dtype=np.uint8),
                     rng.integers(-127, 127, (k, n), dtype=np.int8), 2 * m * k * n)
    src, dst = np.ones(32 << 20, dtype=np.uint8), np.empty(32 << 20, dtype=np.uint8)
    best = float("inf")
    for _ in range(7):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return {"fp32_gflops_per_core": fp32, "int8_gops_per_core": int8, "bandwidth_gbs": 2 * src.nbytes / best / 1e9}


def host_peaks(threads: int, *, remeasure: bool = False) -> Peaks:
    """This host's peaks for `threads` threads (per-core rates x threads), measured once per CPU and onnxruntime."""
    import onnxruntime

    from edgetune.runtime import cpu_model_and_flags

    cpu, flags = cpu_model_and_flags()
    key = f"{cpu} | {' '.join(flags)} | onnxruntime {onnxruntime.__version__} | {platform.machine()}"
    path = _cache_file()
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    if remeasure or key not in cached:
        cached[key] = measure_host_peaks() | {"measured": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cached, indent=2))
        os.replace(tmp, path)
    m = cached[key]
    return Peaks(m["fp32_gflops_per_core"] * threads, m["int8_gops_per_core"] * threads, m["bandwidth_gbs"],
                 f"measured on this host {m['measured']} ({path}): onnxruntime MatMul / MatMulInteger 256x1024x1024 on "
                 f"one thread x {threads} threads; numpy copy of 32 MB (read + write)")


# --- the estimate -------------------------------------------------------------------------------------------

def _length(value) -> int:
    if isinstance(value, dict):
        value = value.get("median") or value.get("max")
    if value is None:
        raise BadInput("host_measurement needs a sequence_length (a number, or the report's {min, median, max})")
    return max(1, int(round(float(value))))


def estimate_latency(model_path: Path, target: Target, host_measurement: dict, *, host: Peaks | None = None,
                     sequence_length: int | None = None, batch_size: int | None = None) -> dict:
    """Estimated latency of `model_path` on `target`, from a measurement of the same model on this host.

    host_measurement: {"p50": ms, "p95": ms, optional "p99"/"mean": ms, "batch_size": int, "threads": int,
    "sequence_length": int or {"min", "median", "max"}} -- report.json's latency_ms plus host.threads.
    The target runs at its own batch size, threads and sequence length (its fixed one; else the measured median,
    since both replay the same test texts); `sequence_length`/`batch_size` override that.
    Returns a dict for report.json's `estimate` (kind "estimate"): the estimated p50/p95 (and p99/mean when
    given), both rooflines, the scale between them, the peaks and their sources, and the assumptions.
    """
    model_path = Path(model_path)
    if not model_path.is_file():
        raise BadInput(f"{model_path}: model not found")
    for key in ("p50", "p95", "threads", "batch_size"):
        if key not in host_measurement:
            raise BadInput(f"host_measurement lacks '{key}' (expected report.json's latency_ms plus host.threads)")
    host_seq, host_batch = _length(host_measurement.get("sequence_length")), int(host_measurement["batch_size"])
    host_threads = int(host_measurement["threads"])
    seq = sequence_length or target.sequence_length or host_seq
    batch = batch_size or target.batch_size
    threads = min(target.intra_op_threads, target.cores)
    tpeaks = target_peaks(target, threads)
    hpeaks = host or host_peaks(host_threads)

    host_costs = op_costs(model_path, host_batch, host_seq)
    target_costs = host_costs if (seq, batch) == (host_seq, host_batch) else op_costs(model_path, batch, seq)
    host_ms, _ = roofline_ms(host_costs, hpeaks)
    target_ms, timed = roofline_ms(target_costs, tpeaks)
    scale = target_ms / host_ms
    flops = {p: sum(c["flops"] for c in target_costs if c["precision"] == p) for p in ("fp32", "int8")}
    compute_ms = sum(t["ms"] for t in timed if t["bound"] == "compute")
    top = sorted(timed, key=lambda t: -t["ms"])[:5]
    estimate = {
        "kind": "estimate",
        "method": "per-op roofline, scaled by this host's measured / roofline latency",
        "note": (f"ESTIMATE for {target.name}, not a measurement: this host's measured latency x "
                 f"(roofline on {target.name}) / (roofline on this host)."),
        "target": target.name,
        "at": {"batch_size": batch, "sequence_length": seq, "threads": threads},
        "scale": scale,
        "target_roofline_ms": target_ms,
        "host_roofline_ms": host_ms,
        "host_efficiency": host_ms / float(host_measurement["p50"]),
        "host_measured_at": {"batch_size": host_batch, "sequence_length": host_seq, "threads": host_threads,
                             "p50": host_measurement["p50"], "p95": host_measurement["p95"]},
        "graph": {"gflop_fp32": flops["fp32"] / 1e9, "gop_int8": flops["int8"] / 1e9,
                  "mbytes_moved": sum(c["bytes"] for c in target_costs) / 1e6,
                  "compute_bound_share": compute_ms / target_ms if target_ms else 0.0,
                  "top_ops": [{k: t[k] for k in ("name", "op", "precision", "bound", "ms")} for t in top]},
        "target_peaks": {"fp32_gflops": tpeaks.fp32, "int8_gops": tpeaks.int8, "bandwidth_gbs": tpeaks.bandwidth,
                         "source": tpeaks.source},
        "host_peaks": {"fp32_gflops": hpeaks.fp32, "int8_gops": hpeaks.int8, "bandwidth_gbs": hpeaks.bandwidth,
                       "source": hpeaks.source},
        "assumptions": [
            "this host's efficiency against its own roofline (dispatch overhead, cache behaviour, kernel quality) "
            "carries over to the target",
            "the target's peaks are datasheet numbers (theoretical); this host's are measured (achieved): the "
            "estimate leans optimistic by the gap between the two on the target",
            "compute scales linearly with threads; memory bandwidth does not depend on threads",
            "operators run one after another (no overlap between ops); each moves its inputs and outputs once "
            "through DRAM (no cache reuse between ops)",
            "the same onnxruntime version and kernels run on the target (ISA-specific kernels differ in efficiency)",
        ],
    }
    for key in ("p50", "p95", "p99", "mean"):
        if key in host_measurement:
            estimate[f"{key}_ms"] = float(host_measurement[key]) * scale
    if target.execution_provider != "CPUExecutionProvider":
        estimate["assumptions"].append(f"{target.execution_provider}: a CPU host's efficiency says little about a "
                                       "GPU's (kernel launches dominate small batches): treat as an order of magnitude")
    return estimate
