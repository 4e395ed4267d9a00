"""Hardware target profiles: targets/*.yaml -> frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from edgetune import schema
from edgetune.errors import BadInput


def builtin_targets_dir() -> Path:
    """targets/ ships at the repository top level; a wheel install carries it inside the package."""
    packaged = Path(__file__).parent / "targets"
    return packaged if packaged.is_dir() else Path(__file__).parent.parent / "targets"


@dataclass(frozen=True)
class Budgets:
    p95_ms: float | None = None
    size_mb: float | None = None
    min_accuracy: float | None = None


@dataclass(frozen=True)
class QuantizationPreset:
    """How int8 is laid out for this ISA (onnxruntime.quantization arguments), and the float graph fused before it."""

    weight_type: Literal["int8", "uint8"] = "int8"
    activation_type: Literal["int8", "uint8"] = "uint8"
    per_channel: bool = True
    reduce_range: bool = False  # 7-bit weights: avoids u8*s8 overflow in AVX2 kernels without VNNI
    symmetric_activations: bool = False
    symmetric_weights: bool = True
    op_types: tuple[str, ...] = ()  # empty: every op type onnxruntime can quantize (embeddings included)
    # False: residual Add + LayerNormalization stay two ops (quantizers.graph.residual_adds_as_sum says why); True
    # where the execution provider's SkipLayerNormalization kernel is the fast one (CUDA).
    fuse_skip_layer_norm: bool = False


@dataclass(frozen=True)
class Remote:
    """An SSH-reachable device that runs the bench itself (edgetune.remote). Keys are checked, never prompted."""

    host: str
    user: str | None = None  # None: ssh's default (the local user, or ~/.ssh/config)
    port: int = 22
    identity_file: str | None = None  # private key; None: ssh's defaults and agent
    known_hosts: str | None = None  # None: ~/.ssh/known_hosts
    python: str = "python3"  # interpreter on the device with onnxruntime, numpy and tokenizers
    dir: str = ".cache/edgetune-bench"  # working folder on the device (relative: under the login's home)

    @property
    def address(self) -> str:
        return f"{self.user + '@' if self.user else ''}{self.host}:{self.port}"


@dataclass(frozen=True)
class PeakCompute:
    """Peak arithmetic throughput of the whole chip (all cores), GFLOP/s for fp32, GOP/s for int8."""

    fp32: float | None = None
    int8: float | None = None


@dataclass(frozen=True)
class Target:
    name: str
    arch: Literal["x86_64", "aarch64"]
    cores: int
    execution_provider: str = "CPUExecutionProvider"
    threads: int = 0  # 0: as many as the target has cores
    batch_size: int = 1
    sequence_length: int | None = None  # None: replay the test split's real token lengths
    isa: tuple[str, ...] = ()  # CPU features the target has, e.g. avx2, avx512_vnni, asimddp
    memory_gb: float | None = None
    budgets: Budgets = field(default_factory=Budgets)
    quantization: QuantizationPreset = field(default_factory=QuantizationPreset)
    cpu: str | None = None  # core name, e.g. cortex-a76: the CPU model aarch64 emulation (edgetune verify) uses
    peak_gflops: PeakCompute = field(default_factory=PeakCompute)  # for roofline estimates (edgetune.roofline)
    memory_bandwidth_gbs: float | None = None  # DRAM bandwidth, GB/s
    remote: Remote | None = None  # bench on this device over SSH instead of on this host
    description: str = field(default="", compare=False)  # the file's header comment
    source: str = field(default="", compare=False)

    @property
    def intra_op_threads(self) -> int:
        return self.threads or self.cores


def known_targets() -> dict[str, Path]:
    return {p.stem: p for p in sorted(builtin_targets_dir().glob("*.yaml"))}


def load_target(name_or_path: str) -> Target:
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.exists()):
        known = known_targets()
        if name_or_path not in known:
            if path.suffix in (".yaml", ".yml"):
                raise BadInput(f"target file {name_or_path} not found")
            raise BadInput(
                f"unknown target '{name_or_path}'; known targets: {', '.join(known)} "
                "(or give a path to your own board.yaml)"
            )
        path = known[name_or_path]
    raw = schema.read_yaml(path)
    raw.setdefault("name", path.stem)
    target = schema.build(Target, raw, source=str(path))
    header = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line.lstrip("# ").rstrip())
    if target.cores < 1 or target.batch_size < 1:
        raise BadInput(f"{path}: cores and batch_size must be >= 1")
    if target.remote is not None and not 1 <= target.remote.port <= 65535:
        raise BadInput(f"{path}: remote.port = {target.remote.port} must be within 1-65535")
    return replace(target, description=" ".join(h for h in header if h), source=str(path))
