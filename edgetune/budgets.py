"""A target's budgets, each judged only on evidence about that target.

Latency depends on the machine: p95_ms is judged against a measurement made on the target (the device over SSH,
or a host that matches the target profile); when neither exists, against the roofline ESTIMATE for the target,
labelled as such; otherwise it is "not checked on the target", never "ok" from a host that only stands in for
it. Size (the shipped file) and accuracy (the shipped model scored on the test split) do not depend on the host
that measured them, so they are judged directly.

Used by bench (report.json's `budgets`), the CLI's summary and `--fail-on-budget`, report.md and the gate.
"""

from __future__ import annotations

from edgetune.report_json import Budget, Report
from edgetune.targets import Budgets

# Budget.evidence: what the value judged against the limit is.
MEASURED = "measured on the target"
ESTIMATE = "estimate"  # roofline estimate for the target (edgetune.roofline), not a measurement
ANY_HOST = "host-independent"  # the same on every host: the shipped file's size, its test-split accuracy
NOT_CHECKED = "not checked on the target"


def judge(limits: Budgets, report: Report) -> dict[str, Budget]:
    """{budget name: Budget} for every limit the target sets, from what `report` measured and estimated."""
    checks = {}
    if limits.p95_ms is not None:
        checks["p95_ms"] = _latency(limits.p95_ms, report)
    if limits.size_mb is not None:
        size = report.size_bytes / 1e6
        checks["size_mb"] = Budget(limits.size_mb, round(size, 2), size <= limits.size_mb, ANY_HOST)
    if limits.min_accuracy is not None:
        checks["min_accuracy"] = Budget(limits.min_accuracy, round(report.accuracy, 4),
                                        report.accuracy >= limits.min_accuracy, ANY_HOST)
    return checks


def _latency(limit: float, report: Report) -> Budget:
    measured = report.latency_ms.p95
    if report.measured_on_target:
        return Budget(limit, round(measured, 3), measured <= limit, MEASURED)
    estimated = (report.estimate or {}).get("p95_ms")
    if estimated is not None:  # two decimals: an estimate is good to a few percent at best
        return Budget(limit, round(estimated, 2), estimated <= limit, ESTIMATE, host_value=round(measured, 3))
    return Budget(limit, None, None, NOT_CHECKED, host_value=round(measured, 3))


def verdict(b: Budget) -> str:
    """One or a few words: 'ok' only for a value judged on the target itself or host-independent."""
    if b.ok is None:
        return NOT_CHECKED
    if b.evidence == ESTIMATE:
        return "within the limit by the estimate" if b.ok else "over the limit by the estimate"
    return "ok" if b.ok else "over budget"


def describe(name: str, b: Budget, target: str) -> str:
    """One line for the console: the value, the limit, the verdict and what the value is."""
    if b.ok is None:
        return (f"budget {name}: {NOT_CHECKED} {target} (limit {b.limit}; this host measured {b.host_value}, "
                f"a stand-in; no estimate for {target})")
    if b.evidence == ESTIMATE:
        return (f"budget {name}: ESTIMATE {b.value} for {target} (limit {b.limit}) {verdict(b)}, not measured "
                f"on {target}; this host measured {b.host_value}")
    where = f"measured on {target}" if b.evidence == MEASURED else "the same on any host"
    return f"budget {name}: {b.value} (limit {b.limit}) {verdict(b)}, {where}"


def miss_message(name: str, b: Budget, report: Report) -> str:
    """A missed budget in one sentence: the budget, its value, the limit and the evidence."""
    evidence = {ESTIMATE: f"ESTIMATE for {report.target} by roofline, not measured",
                MEASURED: f"measured on {report.target} ({report.host.cpu})",
                ANY_HOST: "the same on any host"}.get(b.evidence, b.evidence)
    relation = "below the minimum" if name.startswith("min_") else "above the limit"
    return f"budget {name} missed: {b.value} is {relation} {b.limit} ({evidence})"


def misses(report: Report) -> list[str]:
    """A message for every budget judged and missed; a budget not checked on the target is never a miss."""
    return [miss_message(name, b, report) for name, b in report.budgets.items() if b.ok is False]
