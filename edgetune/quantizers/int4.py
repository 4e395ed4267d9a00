"""quantize.method int4: blockwise weight-only int4 (MatMulNBits, GatherBlockQuantized), rtn / hqq / gptq."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

from edgetune.data import pad_batch
from edgetune.errors import BadInput
from edgetune.quantizers import INT8_REFERENCE, Quantizer, register

# Weight-only int4: MatMul -> MatMulNBits, embedding Gather -> GatherBlockQuantized.
INT4_OP_TYPES = ("MatMul", "Gather")


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
    import onnx

    _silence_onnxruntime_quantization()
    model = onnx.load(str(src))
    if algorithm in ("hqq", "gptq"):
        model = _matmuls_first(model, block_size, algorithm, accuracy_level, calibration, exclude)
    model = _rtn(model, block_size, INT4_OP_TYPES if algorithm == "rtn" else ("Gather",), exclude)
    for node in model.graph.node:  # one compute mode for every algorithm (hqq's config has no accuracy_level)
        if node.op_type == "MatMulNBits":
            kept = [a for a in node.attribute if a.name != "accuracy_level"]
            del node.attribute[:]
            node.attribute.extend(kept)
            if accuracy_level:
                node.attribute.append(onnx.helper.make_attribute("accuracy_level", accuracy_level))
    onnx.save(model, str(dst))


def _matmuls_first(model, block_size: int, algorithm: str, accuracy_level: int, calibration, exclude):
    """hqq or gptq on the MatMuls; the Gathers are left to rtn."""
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        GPTQWeightOnlyQuantConfig,
        HQQWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    class Quantizer(MatMulNBitsQuantizer):
        # onnxruntime 1.32 applies nodes_to_exclude to RTN but not to GPTQ: mark them float for GPTQ too.
        def _generate_q4_node_config(self):
            return super()._generate_q4_node_config() | {name: "fp32" for name in self.nodes_to_exclude}

    if algorithm == "hqq":
        config = HQQWeightOnlyQuantConfig(block_size=block_size, bits=4, op_types_to_quantize=("MatMul",))
        quantizer = Quantizer(model, nodes_to_exclude=list(exclude), algo_config=config)
        with warnings.catch_warnings():  # torch.from_numpy on read-only initializers: harmless, copied at once
            warnings.simplefilter("ignore", UserWarning)
            quantizer.process()
        return quantizer.model.model
    config = GPTQWeightOnlyQuantConfig(calibration_data_reader=FeedList(calibration or []),
                                       op_types_to_quantize=("MatMul",))
    quantizer = Quantizer(model, block_size=block_size, is_symmetric=False, accuracy_level=accuracy_level,
                          nodes_to_exclude=list(exclude), algo_config=config)
    with contextlib.redirect_stdout(io.StringIO()):  # its progress bar prints to stdout
        quantizer.process()
    return quantizer.model.model


def _rtn(model, block_size: int, op_types: tuple[str, ...], exclude):
    import numpy as np
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    config = DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=True, op_types_to_quantize=op_types,
                                          quant_axes=(("MatMul", 0), ("Gather", 1)))
    quantizer = MatMulNBitsQuantizer(model, nodes_to_exclude=list(exclude), algo_config=config)
    with np.errstate(invalid="ignore", divide="ignore"):  # all-zero blocks (the padding row): 0/0, handled there
        quantizer.process()
    return quantizer.model.model


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


@register
class Int4WeightOnly(Quantizer):
    name = "int4"
    # Attention and the embeddings stay unfused, so the Q/K/V projections stay MatMuls that MatMulNBits can take and
    # the embedding tables stay Gathers that GatherBlockQuantized can take (a fused Attention op keeps its QKV
    # weights in fp32 under weight-only quantization).
    fusion = "weight_only"
    feeds: list[dict] | None = None

    @classmethod
    def reads_calibration(cls, q) -> bool:
        return q.int4_algorithm == "gptq"  # GPTQ's Hessians come from the calibration texts

    def prepare(self, texts: list[str], tokenizer, names: tuple[str, ...], max_length: int) -> None:
        if self.q.int4_algorithm == "gptq":
            # One text per feed: GPTQ's Hessians then see no padding positions.
            self.feeds = [{n: v for n, v in pad_batch([ids], tokenizer.pad_token_id).items() if n in names}
                          for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
        if self.q.int4_algorithm == "hqq":
            import importlib.util

            if importlib.util.find_spec("torch") is None:
                raise BadInput("quantize.int4_algorithm hqq needs torch (onnxruntime's HQQ runs on it); install "
                               "torch or pick rtn or gptq")

    def quantize(self, dst: Path, exclude: Sequence[str] = (), only: Sequence[str] | None = None) -> None:
        if only is not None:  # weight-only quantizers take exclusions only: exclude every other candidate
            from edgetune.quantizers.graph import quantizable

            exclude = [n for n, _ in quantizable(self.source, self) if n not in only]
        q = self.q
        int4_weight_only(self.source, dst, q.block_size, algorithm=q.int4_algorithm,
                         accuracy_level=q.int4_accuracy_level, calibration=self.feeds, exclude=exclude)

    def op_types(self) -> tuple[str, ...]:
        return INT4_OP_TYPES

    def quantizes(self, node, weight: str | None) -> bool:
        # Constant MatMul weights (input 1) and embedding tables (Gather input 0).
        return ((node.op_type == "MatMul" and weight == node.input[1])
                or (node.op_type == "Gather" and weight == node.input[0]))

    def describe(self) -> str:
        q = self.q
        return (f"int4 weight-only ({q.int4_algorithm}, block {q.block_size}, accuracy_level "
                f"{q.int4_accuracy_level}{': int8 compute' if q.int4_accuracy_level == 4 else ''})")

    def log_detail(self) -> str:
        return f" ({self.q.int4_algorithm}, block {self.q.block_size})"

    def summary(self) -> dict:
        q = self.q
        return {"int4_algorithm": q.int4_algorithm, "block_size": q.block_size,
                "int4_accuracy_level": q.int4_accuracy_level}

    def not_covered(self, op_type: str) -> str:
        return "weight-only int4 covers MatMul and Gather"

    def extras(self, out_dir: Path, fp32_export: Path, config: dict) -> dict:
        """int4 is chosen for size; bench times this int8 dynamic model of the same export beside it, so the
        report says what int4 costs in latency on the host (small encoders on CPU often run slower in int4)."""
        from edgetune.quantizers.graph import fuse
        from edgetune.quantizers.int8_dynamic import int8_dynamic

        source = fp32_export
        if self.q.optimize:
            source = self.work / "fused_int8.onnx"
            fuse(fp32_export, source, config, skip_layer_norm=self.preset.fuse_skip_layer_norm)
        int8_dynamic(source, out_dir / INT8_REFERENCE, self.preset)
        return {"int8_reference_size_bytes": (out_dir / INT8_REFERENCE).stat().st_size}
