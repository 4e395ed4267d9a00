"""quantize.method none: the fused fp32 graph, as a baseline and for targets that run float."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from edgetune.quantizers import Quantizer, register


@register
class NoQuantization(Quantizer):
    name = "none"
    changes_graph = False

    def quantize(self, dst: Path, exclude: Sequence[str] = (), only: Sequence[str] | None = None) -> None:
        shutil.copy(self.source, dst)

    def quantizes(self, node, weight: str | None) -> bool:
        return False

    def describe(self) -> str:
        return "not quantized (quantize.method none): fp32 graph" + (" with fusions" if self.q.optimize else "")

    def not_covered(self, op_type: str) -> str:
        return "quantize.method is none"
