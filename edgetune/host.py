"""What machine a measurement ran on, and whether it is the target."""

from __future__ import annotations

import importlib.metadata
import os
import platform

from edgetune.targets import Target

INTERESTING_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "asimd", "asimddp", "i8mm", "sve")


def cpu_model_and_flags() -> tuple[str, list[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in open("/proc/cpuinfo"):
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("model name", "hardware") and model in ("", platform.machine(), platform.processor()):
                model = value.strip()
            elif key in ("flags", "features"):
                flags.update(value.split())
    except OSError:
        pass
    return model, sorted(f for f in flags if f in INTERESTING_FLAGS)


def describe(target: Target) -> dict:
    cpu, flags = cpu_model_and_flags()
    cores = os.cpu_count() or 1
    threads = min(target.intra_op_threads, cores)
    host = {
        "cpu": cpu,
        "arch": platform.machine(),
        "flags": flags,
        "cores": cores,
        "threads": threads,
        "onnxruntime": importlib.metadata.version("onnxruntime"),
        "execution_provider": target.execution_provider,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
    }
    if threads < target.intra_op_threads:
        host["threads_note"] = f"target has {target.intra_op_threads} threads; capped at this host's {cores} cores"
    return host


def target_mismatch(target: Target, host: dict) -> str | None:
    """A sentence saying why this host's numbers are not the target's, or None when the host matches it."""
    if host["arch"] != target.arch:
        return (f"Measured on {host['cpu']} ({host['arch']}, {host['cores']} cores), NOT on the target "
                f"{target.name} ({target.arch}, {target.cores} cores): latency is this host's, not the device's.")
    missing = [f for f in target.isa if f not in host["flags"]]
    if missing or host["cores"] < target.cores:
        why = f"lacks {', '.join(missing)}" if missing else f"has {host['cores']} of the target's {target.cores} cores"
        return (f"Measured on {host['cpu']}, which {why}: a stand-in for {target.name}, not the target itself.")
    return None
