"""quantize.method int8-dynamic: int8 weights, activations quantized at run time (onnxruntime quantize_dynamic)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from edgetune.quantizers import Quantizer, register


def qtype(name: str):
    from onnxruntime.quantization import QuantType

    return {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}[name]


def dynamic_op_types(preset) -> tuple[str, ...]:
    """Op types quantize_dynamic quantizes: its registry, plus Gemm (which it rewrites to MatMul + Add first)."""
    from onnxruntime.quantization.registry import IntegerOpsRegistry

    return tuple(preset.op_types) or (*IntegerOpsRegistry, "Gemm")


def _with_gemm_aliases(names: Sequence[str]) -> list[str]:
    # quantize_dynamic rewrites Gemm `name` into MatMul `name_MatMul` + Add before it matches node names.
    return [alias for name in names for alias in (name, f"{name}_MatMul")]


def int8_dynamic(src: Path, dst: Path, preset, *, exclude: Sequence[str] = (), only: Sequence[str] | None = None) -> None:
    import onnx
    from onnxruntime.quantization import quantize_dynamic

    quantize_dynamic(
        str(src), str(dst), weight_type=qtype(preset.weight_type), per_channel=preset.per_channel,
        reduce_range=preset.reduce_range, op_types_to_quantize=list(preset.op_types) or None,
        nodes_to_exclude=_with_gemm_aliases(exclude), nodes_to_quantize=_with_gemm_aliases(only) if only else None,
        # Fused graphs carry ops whose weight types onnxruntime cannot infer without this default.
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


@register
class Int8Dynamic(Quantizer):
    name = "int8-dynamic"

    def quantize(self, dst: Path, exclude: Sequence[str] = (), only: Sequence[str] | None = None) -> None:
        int8_dynamic(self.source, dst, self.preset, exclude=exclude, only=only)

    def op_types(self) -> tuple[str, ...]:
        return dynamic_op_types(self.preset)

    def describe(self) -> str:
        return "int8 dynamic (weights int8, activations quantized at run time)"
