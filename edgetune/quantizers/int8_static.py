"""quantize.method int8-static: QDQ int8 with activation ranges calibrated on sample texts (quantize_static)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from pathlib import Path

from edgetune.console import progress
from edgetune.data import pad_batch
from edgetune.quantizers import Quantizer, register
from edgetune.quantizers.int8_dynamic import qtype

# Static QDQ on every op also quantizes the attention-mask arithmetic (adds of about -3.4e38), which wipes
# out the logits (5% accuracy on the demo task); weights-bearing ops are what int8 speeds up anyway.
STATIC_OP_TYPES = ("MatMul", "Gemm", "Gather")
CALIBRATION_BATCH = 8  # texts per calibration batch, padded to the batch's longest
CALIBRATORS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}


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


def int8_static(src: Path, dst: Path, preset, reader, method: str, *, cache: Path | None = None,
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
            activation_type=qtype(preset.activation_type), weight_type=qtype(preset.weight_type),
            per_channel=preset.per_channel, reduce_range=preset.reduce_range,
            op_types_to_quantize=list(preset.op_types or STATIC_OP_TYPES),
            nodes_to_exclude=list(exclude), nodes_to_quantize=list(only) if only else None,
            extra_options=extra, calibration_cache_path=cache,
        )


@register
class Int8Static(Quantizer):
    name = "int8-static"
    fusion = None  # ranges are calibrated on the plain export's tensors; quantize.optimize does not apply

    @classmethod
    def reads_calibration(cls, q) -> bool:
        return True

    def prepare(self, texts: list[str], tokenizer, names: tuple[str, ...], max_length: int) -> None:
        self.reader = TextCalibrationReader(texts, tokenizer, names, max_length)

    def quantize(self, dst: Path, exclude: Sequence[str] = (), only: Sequence[str] | None = None) -> None:
        int8_static(self.source, dst, self.preset, self.reader, self.q.calibration_method,
                    cache=self.work / "calibration.json", exclude=exclude, only=only)

    def op_types(self) -> tuple[str, ...]:
        return tuple(self.preset.op_types or STATIC_OP_TYPES)

    def quantizes(self, node, weight: str | None) -> bool:
        return node.op_type in self.op_types() and (weight is not None or node.op_type == "MatMul")

    def describe(self) -> str:
        return f"int8 static QDQ ({self.q.calibration_method} calibration)"

    def log_detail(self) -> str:
        return f" ({self.q.calibration_method})"
