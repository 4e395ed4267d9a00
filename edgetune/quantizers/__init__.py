"""Quantization methods as registered units, in the spirit of Olive's passes: one module per method family.

A method is a Quantizer subclass registered under its `quantize.method` name. It declares what it reads
(`reads_calibration`), how the graph is fused before it (`fusion`), which nodes it quantizes (`quantizes`) and how it
keeps chosen nodes float (`quantize(dst, exclude, only)`), and how it describes itself (`describe`, `summary`). The
quantize stage picks one from the registry and knows no method by name. Adding a method: one module with the
subclass, one line in METHOD_MODULES, its tests.

This module imports no onnx or onnxruntime: the recipe checks `quantize.method` against the registry at load time.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

# The modules that register the shipped methods, imported on first use of the registry.
METHOD_MODULES = ("edgetune.quantizers.none", "edgetune.quantizers.int8_dynamic", "edgetune.quantizers.int8_static",
                  "edgetune.quantizers.int4")
INT8_REFERENCE = "int8_reference.onnx"  # beside an int4 model: what int4 is compared with in bench

_REGISTRY: dict[str, type[Quantizer]] = {}


class Quantizer:
    """One way of quantizing a fused fp32 graph. Construct with the recipe's quantize section, the target's preset,
    the float graph and a scratch folder; `prepare` gives it calibration texts when it reads them."""

    name: ClassVar[str]
    fusion: ClassVar[str | None] = "all"  # "all": onnxruntime's transformer fusions; "weight_only"; None: none
    changes_graph: ClassVar[bool] = True  # False: ships the float graph (its note then lists no nodes)

    def __init__(self, q, preset, source: Path, work: Path):
        self.q, self.preset, self.source, self.work = q, preset, source, work

    @classmethod
    def reads_calibration(cls, q) -> bool:
        """Whether this method, as configured, needs calibration texts (part of the stage's cache key)."""
        return False

    def prepare(self, texts: list[str], tokenizer, names: tuple[str, ...], max_length: int) -> None:
        """Get ready to quantize: calibration readers and the like. `texts` is empty unless reads_calibration."""

    def quantize(self, dst: Path, exclude: Sequence[str] = (), only: Sequence[str] | None = None) -> None:
        """Write the quantized graph to dst, leaving `exclude` float, or quantizing only `only` when given."""
        raise NotImplementedError

    def __call__(self, dst: Path, exclude: Sequence[str] = (), only: Sequence[str] | None = None) -> None:
        """sensitivity.accuracy_aware calls a method as quantize(dst, exclude=..., only=...)."""
        self.quantize(dst, exclude, only)

    def op_types(self) -> tuple[str, ...]:
        """Op types this method quantizes (with the target's preset)."""
        return ()

    def quantizes(self, node, weight: str | None) -> bool:
        """Whether `node` (with its float weight's name, or None) is one this method quantizes."""
        return node.op_type in self.op_types() and weight is not None

    def describe(self) -> str:
        """What was done, for quantize.json's note: e.g. "int8 dynamic (weights int8, ...)"."""
        return self.name

    def log_detail(self) -> str:
        """Settings worth a word in the build log after the method's name, e.g. " (minmax)"."""
        return ""

    def summary(self) -> dict:
        """Method-specific fields of quantize.json."""
        return {}

    def not_covered(self, op_type: str) -> str:
        """Why a node of an op type this method does not quantize stayed float."""
        return f"{op_type} is not among the op types {self.name} quantizes here"

    def extras(self, out_dir: Path, fp32_export: Path, config: dict) -> dict:
        """Anything else the stage publishes beside the model (int4: an int8 reference); quantize.json fields."""
        return {}


def register(cls: type[Quantizer]) -> type[Quantizer]:
    """Class decorator: make `cls` the method named cls.name."""
    _REGISTRY[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def _load() -> None:
    for module in METHOD_MODULES:
        importlib.import_module(module)


def names() -> tuple[str, ...]:
    _load()
    return tuple(_REGISTRY)


def get(name: str) -> type[Quantizer]:
    """The registered method; KeyError only for a name recipe validation let through, which it does not."""
    _load()
    return _REGISTRY[name]
