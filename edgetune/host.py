"""What machine a measurement ran on, and whether it is the target."""

from __future__ import annotations

from edgetune.runtime import INTERESTING_FLAGS, cpu_model_and_flags, describe_host
from edgetune.targets import Target

# cpu_model_and_flags is the runtime's, named here too for the modules that ask this one about the host.
__all__ = ["INTERESTING_FLAGS", "cpu_model_and_flags", "describe", "target_mismatch"]


def describe(target: Target) -> dict:
    """This host, as the runtime describes any machine, for the target's threads and execution provider."""
    return describe_host(target.intra_op_threads, target.execution_provider)


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
