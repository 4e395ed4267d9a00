"""Quantize: transformer fusions, then int8 (dynamic or static QDQ) or int4 weight-only, per the target's preset.

Reads: export/model.onnx, export/merged/config.json, calibration texts (int8-static, int4 gptq), the validation
       split (accuracy-aware mode).
Writes: model.onnx (the model that ships), tokenizer files, labels.json, quantize.json (what was done: method,
        algorithm, calibration, which weight-bearing nodes stayed float and why, a one-line `note`), and in
        accuracy-aware mode sensitivity.json (per-node sensitivity, the exclusion search).

Accuracy-aware mode (`quantize.max_accuracy_drop`): the quantized model's validation accuracy is compared with the
fp32 export's; when the drop exceeds the tolerance, every quantizable node is quantized alone and ranked by how far
it moves the logits on the validation texts (see edgetune/sensitivity.py for why not the calibration texts), and the
most sensitive nodes are kept float (1, 2, 4, ... then a
bisection) until the drop is within tolerance. When no allowed number of float nodes gets there, the stage fails
with the best drop it reached.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import random
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edgetune.console import log, progress
from edgetune.data import load_dataset, pad_batch, read_calibration_texts, sequence_length
from edgetune.errors import BadInput
from edgetune.recipe import QuantizeConfig, Recipe
from edgetune.targets import QuantizationPreset, Target

# onnxruntime.transformers fusion types by Hugging Face model_type.
FUSION_MODEL_TYPES = {"bert": "bert", "roberta": "bert", "xlm-roberta": "bert", "distilbert": "bert",
                      "electra": "bert", "mpnet": "bert"}


# Static QDQ on every op also quantizes the attention-mask arithmetic (adds of about -3.4e38), which wipes
# out the logits (5% accuracy on the demo task); weights-bearing ops are what int8 speeds up anyway.
STATIC_OP_TYPES = ("MatMul", "Gemm", "Gather")
# Weight-only int4: MatMul -> MatMulNBits, embedding Gather -> GatherBlockQuantized.
INT4_OP_TYPES = ("MatMul", "Gather")
CALIBRATION_BATCH = 8  # texts per calibration batch, padded to the batch's longest


INT8_REFERENCE = "int8_reference.onnx"  # beside an int4 model: what int4 is compared with in bench


def fuse(src: Path, dst: Path, config: dict, *, weight_only: bool = False) -> dict[str, int]:
    """Attention / LayerNorm / GELU fusions. Returns the fused-op counts, {} when the model type has none.

    weight_only (int4): leave attention and the embeddings unfused, so the Q/K/V projections stay MatMuls that
    MatMulNBits can take and the embedding tables stay Gathers that GatherBlockQuantized can take (a fused
    Attention op keeps its QKV weights in fp32 under weight-only quantization: 13.3 MB instead of 10.4 MB here).
    """
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    kind = FUSION_MODEL_TYPES.get(config.get("model_type", ""))
    if kind is None:
        log(f"no transformer fusions for model type {config.get('model_type')!r}: quantizing the plain graph")
        shutil.copy(src, dst)
        return {}
    options = FusionOptions(kind)
    if weight_only:
        options.enable_attention = False
        options.enable_embed_layer_norm = False
    optimized = optimize_model(str(src), model_type=kind, num_heads=config.get("num_attention_heads", 0),
                               hidden_size=config.get("hidden_size", 0), opt_level=0, optimization_options=options)
    optimized.save_model_to_file(str(dst))
    fused = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
    log(f"fusions: {', '.join(f'{k} x{v}' for k, v in fused.items()) or 'none matched'}")
    return fused


def _qtype(name: str):
    from onnxruntime.quantization import QuantType

    return {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}[name]


def dynamic_op_types(preset: QuantizationPreset) -> tuple[str, ...]:
    """Op types quantize_dynamic quantizes: its registry, plus Gemm (which it rewrites to MatMul + Add first)."""
    from onnxruntime.quantization.registry import IntegerOpsRegistry

    return tuple(preset.op_types) or (*IntegerOpsRegistry, "Gemm")


def _with_gemm_aliases(names: Sequence[str]) -> list[str]:
    # quantize_dynamic rewrites Gemm `name` into MatMul `name_MatMul` + Add before it matches node names.
    return [alias for name in names for alias in (name, f"{name}_MatMul")]


def int8_dynamic(src: Path, dst: Path, preset: QuantizationPreset, *, exclude: Sequence[str] = (),
                 only: Sequence[str] | None = None) -> None:
    import onnx
    from onnxruntime.quantization import quantize_dynamic

    quantize_dynamic(
        str(src), str(dst), weight_type=_qtype(preset.weight_type), per_channel=preset.per_channel,
        reduce_range=preset.reduce_range, op_types_to_quantize=list(preset.op_types) or None,
        nodes_to_exclude=_with_gemm_aliases(exclude), nodes_to_quantize=_with_gemm_aliases(only) if only else None,
        # Fused graphs carry ops whose weight types onnxruntime cannot infer without this default.
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


class TextCalibrationReader:
    """Feeds tokenized calibration texts one batch at a time, so memory stays flat on large sets.

    Supports onnxruntime's strided calibration (`__len__` in batches, `set_range`), which int8_static uses with a
    stride of one batch: ranges and histograms are merged batch by batch instead of onnxruntime holding every
    activation of the whole set until the end.
    """

    def __init__(self, texts: list[str], tokenizer, names: tuple[str, ...], max_length: int,
                 batch_size: int = CALIBRATION_BATCH):
        self.texts, self.tokenizer, self.names = texts, tokenizer, names
        self.max_length, self.batch_size = max_length, batch_size
        self.batches = (len(texts) + batch_size - 1) // batch_size
        self.position, self.end, self.done = 0, self.batches, 0
        self.bar = progress()
        self.task = self.bar.add_task("calibrating", total=len(texts))

    def __len__(self) -> int:
        return self.batches

    def set_range(self, start_index: int, end_index: int) -> None:
        self.position, self.end = start_index, min(end_index, self.batches)

    def get_next(self):
        if self.position >= self.end:
            if self.done >= len(self.texts):
                self.bar.stop()
            return None
        if self.done == 0:
            self.bar.start()
        chunk = self.texts[self.position * self.batch_size : (self.position + 1) * self.batch_size]
        self.position += 1
        self.done = min(len(self.texts), self.done + len(chunk))
        self.bar.update(self.task, completed=self.done)
        ids = self.tokenizer(chunk, truncation=True, max_length=self.max_length)["input_ids"]
        batch = pad_batch(ids, self.tokenizer.pad_token_id)
        return {n: batch[n] for n in self.names}

    def rewind(self):
        self.position, self.end, self.done = 0, self.batches, 0


CALIBRATORS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}


def int8_static(src: Path, dst: Path, preset: QuantizationPreset, reader, method: str, *, cache: Path | None = None,
                exclude: Sequence[str] = (), only: Sequence[str] | None = None) -> None:
    """QDQ int8. `cache`: onnxruntime's calibration cache: calibrate once, re-quantize with other exclusions."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static

    calibrate = getattr(CalibrationMethod, CALIBRATORS[method])
    cached = cache is not None and cache.is_file()
    extra = {"ActivationSymmetric": preset.symmetric_activations, "WeightSymmetric": preset.symmetric_weights,
             "DefaultTensorType": onnx.TensorProto.FLOAT}
    if not cached:
        # Despite its name, onnxruntime's strided loop serves every calibrator: it merges min/max or histograms
        # per stride. One batch per stride holds one batch's activations at a time, and it is also what the
        # histogram calibrators (entropy, percentile) need: they stack a stride's activations into one array,
        # which fails for batches of different lengths.
        extra["CalibStridedMinMax"] = 1
    with contextlib.redirect_stdout(io.StringIO()):  # the histogram collector prints to stdout
        quantize_static(
            str(src), str(dst), None if cached else reader, quant_format=QuantFormat.QDQ, calibrate_method=calibrate,
            activation_type=_qtype(preset.activation_type), weight_type=_qtype(preset.weight_type),
            per_channel=preset.per_channel, reduce_range=preset.reduce_range,
            op_types_to_quantize=list(preset.op_types or STATIC_OP_TYPES),
            nodes_to_exclude=list(exclude), nodes_to_quantize=list(only) if only else None,
            extra_options=extra, calibration_cache_path=cache,
        )


def _silence_onnxruntime_quantization() -> None:
    # matmul_nbits_quantizer calls logging.basicConfig(level=INFO) when imported: undo it.
    logging.getLogger().setLevel(logging.ERROR)


def int4_weight_only(src: Path, dst: Path, block_size: int, *, algorithm: str = "rtn", accuracy_level: int = 4,
                     calibration: list[dict] | None = None, exclude: Sequence[str] = ()) -> None:
    """Blockwise int4 of MatMul weights (MatMulNBits) and the embedding tables (GatherBlockQuantized).

    rtn: onnxruntime's default round-to-nearest, symmetric, MatMul and Gather.
    hqq: half-quadratic optimisation of scales and zero points (asymmetric, float zero points; needs torch) on
         MatMul. onnxruntime's HQQ refuses Gather (GatherBlockQuantized has no float zero points).
    gptq: Hessian-aware rounding from the calibration activations (asymmetric) on MatMul; onnxruntime's GPTQ
          handles MatMul only.
    For hqq and gptq the embedding Gathers are then quantized with rtn, so every algorithm ships int4 embeddings.
    """
    import numpy as np
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        GPTQWeightOnlyQuantConfig,
        HQQWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    _silence_onnxruntime_quantization()

    class Quantizer(MatMulNBitsQuantizer):
        # onnxruntime 1.32 applies nodes_to_exclude to RTN but not to GPTQ: mark them float for GPTQ too.
        def _generate_q4_node_config(self):
            return super()._generate_q4_node_config() | {name: "fp32" for name in self.nodes_to_exclude}

    model = onnx.load(str(src))
    rtn_ops = INT4_OP_TYPES if algorithm == "rtn" else ("Gather",)
    if algorithm == "hqq":
        config = HQQWeightOnlyQuantConfig(block_size=block_size, bits=4, op_types_to_quantize=("MatMul",))
        quantizer = Quantizer(model, nodes_to_exclude=list(exclude), algo_config=config)
        with warnings.catch_warnings():  # torch.from_numpy on read-only initializers: harmless, copied at once
            warnings.simplefilter("ignore", UserWarning)
            quantizer.process()
        model = quantizer.model.model
    elif algorithm == "gptq":
        config = GPTQWeightOnlyQuantConfig(calibration_data_reader=FeedList(calibration or []),
                                           op_types_to_quantize=("MatMul",))
        quantizer = Quantizer(model, block_size=block_size, is_symmetric=False, accuracy_level=accuracy_level,
                              nodes_to_exclude=list(exclude), algo_config=config)
        with contextlib.redirect_stdout(io.StringIO()):  # its progress bar prints to stdout
            quantizer.process()
        model = quantizer.model.model
    config = DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=True, op_types_to_quantize=rtn_ops,
                                          quant_axes=(("MatMul", 0), ("Gather", 1)))
    quantizer = MatMulNBitsQuantizer(model, nodes_to_exclude=list(exclude), algo_config=config)
    with np.errstate(invalid="ignore", divide="ignore"):  # all-zero blocks (the padding row): 0/0, handled there
        quantizer.process()
    model = quantizer.model.model
    for node in model.graph.node:  # one compute mode for every algorithm (hqq's config has no accuracy_level)
        if node.op_type == "MatMulNBits":
            kept = [a for a in node.attribute if a.name != "accuracy_level"]
            del node.attribute[:]
            node.attribute.extend(kept)
            if accuracy_level:
                node.attribute.append(onnx.helper.make_attribute("accuracy_level", accuracy_level))
    onnx.save(model, str(dst))


class FeedList:
    """A calibration data reader over ready feeds; GPTQ deep-copies and iterates it."""

    def __init__(self, feeds: list[dict]):
        self.feeds, self.position = feeds, 0

    def get_next(self):
        if self.position >= len(self.feeds):
            return None
        self.position += 1
        return self.feeds[self.position - 1]

    def __iter__(self):
        return iter(self.feeds)

    def __len__(self) -> int:
        return len(self.feeds)


def calibration_texts(recipe: Recipe) -> tuple[list[str], str]:
    q = recipe.quantize
    if q.calibration:
        texts = read_calibration_texts(Path(q.calibration))
        origin = q.calibration
    else:
        texts = list(load_dataset(recipe.data, recipe.seed).train.texts)
        origin = f"the train split ({recipe.data.train})"
    if not texts:
        raise BadInput(f"{origin}: the calibration set is empty; give a CSV with a `text` column and rows")
    random.Random(recipe.seed).shuffle(texts)
    return texts[: q.calibration_samples], origin


# --- which nodes are quantized, which stay float ------------------------------------------------------------------

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


def quantizable(model, q: QuantizeConfig, preset: QuantizationPreset) -> list[tuple[str, str]]:
    """(name, op type) of the nodes the method quantizes: the candidates of the sensitivity ranking."""
    initializers = {t.name: t for t in model.graph.initializer}
    found = []
    for node in compute_nodes(model):
        weight = float_weight(node, initializers)
        if q.method == "int8-dynamic":
            ok = node.op_type in dynamic_op_types(preset) and weight is not None
        elif q.method == "int8-static":
            ok = node.op_type in (preset.op_types or STATIC_OP_TYPES) and (weight is not None or node.op_type == "MatMul")
        else:  # int4: constant MatMul weights (input 1) and embedding tables (Gather input 0)
            ok = ((node.op_type == "MatMul" and weight == node.input[1])
                  or (node.op_type == "Gather" and weight == node.input[0]))
        if ok and node.name:
            found.append((node.name, node.op_type))
    return found


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


def describe_nodes(float_graph: Path, shipped_path: Path, q: QuantizeConfig, preset: QuantizationPreset,
                   kept: dict[str, str]) -> tuple[list[dict], dict[str, int]]:
    """(float compute nodes with the reason each stayed float, counts of quantized nodes by op type)."""
    import collections

    import onnx

    model, shipped = onnx.load(str(float_graph)), onnx.load(str(shipped_path))
    by_name = {n.name: n for n in shipped.graph.node if n.name}
    producers = {o: n.op_type for n in shipped.graph.node for o in n.output}
    shipped_inits = {t.name: t for t in shipped.graph.initializer}
    initializers = {t.name: t for t in model.graph.initializer}
    op_types = {"int8-dynamic": dynamic_op_types(preset), "int8-static": tuple(preset.op_types or STATIC_OP_TYPES),
                "int4": INT4_OP_TYPES}.get(q.method, ())
    floats, quantized = [], collections.Counter()
    for node in compute_nodes(model):
        if q.method != "none" and not stays_float(node, by_name, producers, shipped_inits):
            quantized[node.op_type] += 1
            continue
        weight = float_weight(node, initializers)
        if q.method == "none":
            reason = "quantize.method is none"
        elif node.name in kept:
            reason = kept[node.name]
        elif node.op_type not in op_types:
            reason = ("weight-only int4 covers MatMul and Gather" if q.method == "int4"
                      else f"{node.op_type} is not among the op types {q.method} quantizes here")
        elif weight is None:
            reason = f"activation x activation {node.op_type}: {q.method} quantizes constant weights only"
        else:
            reason = "onnxruntime left it float"
        floats.append({"node": node.name, "op_type": node.op_type, "reason": reason})
    return floats, dict(quantized)


def summary_note(q: QuantizeConfig, calibration: str | None, quantized: dict[str, int], floats: list[dict]) -> str:
    if q.method == "none":
        return "not quantized (quantize.method none): fp32 graph" + (" with fusions" if q.optimize else "")
    what = {"int8-dynamic": "int8 dynamic (weights int8, activations quantized at run time)",
            "int8-static": f"int8 static QDQ ({q.calibration_method} calibration)",
            "int4": (f"int4 weight-only ({q.int4_algorithm}, block {q.block_size}, accuracy_level "
                     f"{q.int4_accuracy_level}{': int8 compute' if q.int4_accuracy_level == 4 else ''})")}[q.method]
    parts = [what]
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


# --- the stage --------------------------------------------------------------------------------------------------

@dataclass
class Method:
    """How this build quantizes, minus which nodes stay float: quantize(dst, exclude, only)."""

    q: QuantizeConfig
    preset: QuantizationPreset
    source: Path
    work: Path
    reader: TextCalibrationReader | None = None  # int8-static
    feeds: list[dict] | None = None  # int4 gptq

    def __call__(self, dst: Path, exclude: Sequence[str] = (), only: Sequence[str] | None = None) -> None:
        q = self.q
        if q.method == "int8-dynamic":
            int8_dynamic(self.source, dst, self.preset, exclude=exclude, only=only)
        elif q.method == "int8-static":
            int8_static(self.source, dst, self.preset, self.reader, q.calibration_method,
                        cache=self.work / "calibration.json", exclude=exclude, only=only)
        elif q.method == "int4":
            if only is not None:  # weight-only quantizers take exclusions only: exclude every other candidate
                import onnx

                exclude = [n for n, _ in quantizable(onnx.load(str(self.source)), q, self.preset) if n not in only]
            int4_weight_only(self.source, dst, q.block_size, algorithm=q.int4_algorithm,
                             accuracy_level=q.int4_accuracy_level, calibration=self.feeds, exclude=exclude)
        else:
            shutil.copy(self.source, dst)


def make_method(q: QuantizeConfig, preset: QuantizationPreset, source: Path, work: Path, texts: list[str], tokenizer,
                names: tuple[str, ...], max_length: int) -> Method:
    """A Method ready to run: calibration reader for int8-static, per-text feeds for GPTQ."""
    method = Method(q, preset, source, work)
    if q.method == "int8-static":
        method.reader = TextCalibrationReader(texts, tokenizer, names, max_length)
    if q.method == "int4" and q.int4_algorithm == "gptq":
        # One text per feed: GPTQ's Hessians then see no padding positions.
        method.feeds = [{n: v for n, v in pad_batch([ids], tokenizer.pad_token_id).items() if n in names}
                        for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
    if q.method == "int4" and q.int4_algorithm == "hqq":
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            raise BadInput("quantize.int4_algorithm hqq needs torch (onnxruntime's HQQ runs on it); install torch "
                           "or pick rtn or gptq")
    return method


def run(recipe: Recipe, *, inputs: dict[str, Path], out_dir: Path, target: Target) -> dict[str, float]:
    import onnx
    from transformers import AutoTokenizer

    from edgetune.training import input_names_of

    q, preset = recipe.quantize, target.quantization
    export_dir = inputs["export"]
    config = json.loads((export_dir / "merged" / "config.json").read_text())
    source = export_dir / "model.onnx"
    metrics: dict[str, float] = {}
    work = out_dir / "work"
    work.mkdir()
    if q.optimize and q.method != "int8-static":
        fused = fuse(source, work / "fused.onnx", config, weight_only=q.method == "int4")
        metrics.update({f"fused_{k}": float(v) for k, v in fused.items()})
        source = work / "fused.onnx"
    shipped = out_dir / "model.onnx"
    tokenizer = AutoTokenizer.from_pretrained(export_dir)
    names = input_names_of(tokenizer)
    texts, origin = calibration_texts(recipe) if q.reads_calibration else ([], None)
    described = f"{len(texts)} text{'s' if len(texts) != 1 else ''} from {origin}" if texts else None
    calibrated = q.method == "int8-static" or (q.method == "int4" and q.int4_algorithm == "gptq")
    detail = {"int8-static": f" ({q.calibration_method})", "int4": f" ({q.int4_algorithm}, block {q.block_size})"}
    log(f"method {q.method}{detail.get(q.method, '')}, target preset {preset.weight_type} weights, "
        f"per_channel={preset.per_channel}, reduce_range={preset.reduce_range}"
        + (f"; calibration: {described}" if calibrated else ""))
    max_length = sequence_length(recipe.data, tokenizer, load_dataset(recipe.data, recipe.seed).train.texts).tokens
    method = make_method(q, preset, source, work, texts, tokenizer, names, max_length)
    method(shipped)

    kept: dict[str, str] = {}
    record: dict = {}
    if q.max_accuracy_drop is not None and q.method != "none":
        from edgetune import sensitivity

        kept, record = sensitivity.accuracy_aware(
            method, shipped=shipped, reference=export_dir / "model.onnx", float_graph=source,
            candidates=quantizable(onnx.load(str(source)), q, preset),
            validation=load_dataset(recipe.data, recipe.seed).validation, tokenizer=tokenizer, names=names,
            max_length=max_length, tolerance=q.max_accuracy_drop, cap=q.max_float_nodes,
            source=recipe.source, work=work)
        metrics.update(record["metrics"])
        if record.get("nodes"):
            (out_dir / "sensitivity.json").write_text(json.dumps(record["table"], indent=2))

    floats, quantized = describe_nodes(source, shipped, q, preset, kept)
    note = summary_note(q, described if calibrated else None, quantized, floats)
    size = shipped.stat().st_size
    summary = {
        "method": q.method,
        "int4_algorithm": q.int4_algorithm if q.method == "int4" else None,
        "block_size": q.block_size if q.method == "int4" else None,
        "int4_accuracy_level": q.int4_accuracy_level if q.method == "int4" else None,
        "calibration": {"texts": len(texts), "source": origin, "method": q.calibration_method} if texts else None,
        "fusions": q.optimize and q.method != "int8-static",
        "preset": {k: getattr(preset, k) for k in ("weight_type", "activation_type", "per_channel", "reduce_range",
                                                    "symmetric_activations", "symmetric_weights")},
        "quantized_nodes": quantized,
        "float_nodes": floats,
        "accuracy_aware": record.get("summary"),
        "size_bytes": size,
        "note": note,
    }
    if q.method == "int4":
        # int4 is chosen for size; bench times this int8 dynamic model beside it, so the report says what int4
        # costs in latency on the host (on small encoders on CPU it is often slower than int8).
        int8_source = export_dir / "model.onnx"
        if q.optimize:
            fuse(int8_source, work / "fused_int8.onnx", config)
            int8_source = work / "fused_int8.onnx"
        int8_dynamic(int8_source, out_dir / INT8_REFERENCE, preset)
        summary["int8_reference_size_bytes"] = (out_dir / INT8_REFERENCE).stat().st_size
    (out_dir / "quantize.json").write_text(json.dumps(summary, indent=2))
    shutil.rmtree(work)
    for item in export_dir.iterdir():  # tokenizer files and labels travel with the model
        if item.is_file() and item.name not in ("model.onnx", "manifest.json"):
            shutil.copy(item, out_dir / item.name)
    log(f"{q.method}: {size / 1e6:.1f} MB (fp32 export {(export_dir / 'model.onnx').stat().st_size / 1e6:.1f} MB); {note}")
    metrics["size_bytes"] = float(size)
    metrics["quantized_nodes"] = float(sum(quantized.values()))
    metrics["float_nodes"] = float(len(floats))
    if texts:
        metrics["calibration_texts"] = float(len(texts))
    return metrics
