"""Quantize: transformer fusions, then int8 (dynamic or static QDQ) or int4 weight-only, per the target's preset.

Reads: export/model.onnx, export/merged/config.json, calibration texts (int8-static).
Writes: model.onnx (the model that ships), tokenizer files, labels.json.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from edgetune.console import log, progress
from edgetune.data import load_dataset, pad_batch, read_calibration_texts
from edgetune.errors import BadInput
from edgetune.recipe import Recipe
from edgetune.targets import QuantizationPreset, Target

# onnxruntime.transformers fusion types by Hugging Face model_type.
FUSION_MODEL_TYPES = {"bert": "bert", "roberta": "bert", "xlm-roberta": "bert", "distilbert": "bert",
                      "electra": "bert", "mpnet": "bert"}


# Static QDQ on every op also quantizes the attention-mask arithmetic (adds of about -3.4e38), which wipes
# out the logits (5% accuracy on the demo task); weights-bearing ops are what int8 speeds up anyway.
STATIC_OP_TYPES = ("MatMul", "Gemm", "Gather")


def fuse(src: Path, dst: Path, config: dict) -> dict[str, int]:
    """Attention / LayerNorm / GELU fusions. Returns the fused-op counts, {} when the model type has none."""
    from onnxruntime.transformers.optimizer import optimize_model

    kind = FUSION_MODEL_TYPES.get(config.get("model_type", ""))
    if kind is None:
        log(f"no transformer fusions for model type {config.get('model_type')!r}: quantizing the plain graph")
        shutil.copy(src, dst)
        return {}
    optimized = optimize_model(str(src), model_type=kind, num_heads=config.get("num_attention_heads", 0),
                               hidden_size=config.get("hidden_size", 0), opt_level=0)
    optimized.save_model_to_file(str(dst))
    fused = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
    log(f"fusions: {', '.join(f'{k} x{v}' for k, v in fused.items()) or 'none matched'}")
    return fused


def _qtype(name: str):
    from onnxruntime.quantization import QuantType

    return {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}[name]


def int8_dynamic(src: Path, dst: Path, preset: QuantizationPreset) -> None:
    import onnx
    from onnxruntime.quantization import quantize_dynamic

    quantize_dynamic(
        str(src), str(dst), weight_type=_qtype(preset.weight_type), per_channel=preset.per_channel,
        reduce_range=preset.reduce_range, op_types_to_quantize=list(preset.op_types) or None,
        # Fused graphs carry ops whose weight types onnxruntime cannot infer without this default.
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


class TextCalibrationReader:
    """Feeds tokenized calibration texts one batch at a time, so memory stays flat on large sets."""

    def __init__(self, texts: list[str], tokenizer, names: tuple[str, ...], max_length: int, batch_size: int = 8):
        self.texts, self.tokenizer, self.names = texts, tokenizer, names
        self.max_length, self.batch_size, self.position = max_length, batch_size, 0
        self.bar = progress()
        self.task = self.bar.add_task("calibrating", total=len(texts))

    def get_next(self):
        if self.position >= len(self.texts):
            self.bar.stop()
            return None
        if self.position == 0:
            self.bar.start()
        chunk = self.texts[self.position : self.position + self.batch_size]
        self.position += len(chunk)
        self.bar.update(self.task, completed=self.position)
        ids = self.tokenizer(chunk, truncation=True, max_length=self.max_length)["input_ids"]
        batch = pad_batch(ids, self.tokenizer.pad_token_id)
        return {n: batch[n] for n in self.names}

    def rewind(self):
        self.position = 0


def int8_static(src: Path, dst: Path, preset: QuantizationPreset, reader, method: str) -> None:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static

    calibrate = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                 "percentile": CalibrationMethod.Percentile}[method]
    quantize_static(
        str(src), str(dst), reader, quant_format=QuantFormat.QDQ, calibrate_method=calibrate,
        activation_type=_qtype(preset.activation_type), weight_type=_qtype(preset.weight_type),
        per_channel=preset.per_channel, reduce_range=preset.reduce_range,
        op_types_to_quantize=list(preset.op_types or STATIC_OP_TYPES),
        extra_options={"ActivationSymmetric": preset.symmetric_activations,
                       "WeightSymmetric": preset.symmetric_weights,
                       "DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def int4_weight_only(src: Path, dst: Path, block_size: int) -> None:
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    # Round-to-nearest blockwise int4 of MatMul weights and of the embedding table (Gather): the embedding
    # is most of a small encoder's bytes.
    config = DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=True, op_types_to_quantize=("MatMul", "Gather"),
                                          quant_axes=(("MatMul", 0), ("Gather", 1)))
    quantizer = MatMulNBitsQuantizer(onnx.load(str(src)), algo_config=config)
    quantizer.process()
    quantizer.model.save_model_to_file(str(dst), use_external_data_format=False)


def calibration_texts(recipe: Recipe) -> list[str]:
    q = recipe.quantize
    if q.calibration:
        texts = read_calibration_texts(Path(q.calibration))
        origin = q.calibration
    else:
        texts = list(load_dataset(recipe.data, recipe.seed).train.texts)
        origin = f"the train split ({recipe.data.train})"
    if not texts:
        raise BadInput(f"{origin}: the calibration set is empty; give a CSV with a `text` column and rows")
    import random

    random.Random(recipe.seed).shuffle(texts)
    texts = texts[: q.calibration_samples]
    log(f"calibrating on {len(texts)} texts from {origin} ({q.calibration_method})")
    return texts


def run(recipe: Recipe, *, inputs: dict[str, Path], out_dir: Path, target: Target) -> dict[str, float]:
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
        fused = fuse(source, work / "fused.onnx", config)
        metrics.update({f"fused_{k}": float(v) for k, v in fused.items()})
        source = work / "fused.onnx"
    shipped = out_dir / "model.onnx"
    log(f"method {q.method}, target preset {preset.weight_type} weights, per_channel={preset.per_channel}, "
        f"reduce_range={preset.reduce_range}")
    if q.method == "none":
        shutil.copy(source, shipped)
    elif q.method == "int8-dynamic":
        int8_dynamic(source, shipped, preset)
    elif q.method == "int8-static":
        tokenizer = AutoTokenizer.from_pretrained(export_dir)
        reader = TextCalibrationReader(calibration_texts(recipe), tokenizer, input_names_of(tokenizer), recipe.data.max_length)
        int8_static(source, shipped, preset, reader, q.calibration_method)
    elif q.method == "int4":
        int4_weight_only(source, shipped, q.block_size)
    shutil.rmtree(work)
    for item in export_dir.iterdir():  # tokenizer files and labels travel with the model
        if item.is_file() and item.name not in ("model.onnx", "manifest.json"):
            shutil.copy(item, out_dir / item.name)
    size = shipped.stat().st_size
    log(f"{q.method}: {size / 1e6:.1f} MB (fp32 export {(export_dir / 'model.onnx').stat().st_size / 1e6:.1f} MB)")
    metrics["size_bytes"] = float(size)
    return metrics
