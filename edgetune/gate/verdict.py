"""The gate's checks: a latency ratio's interval against the limit, accuracy against the allowed drop."""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgetune.report_json import Report
from edgetune.runtime import ratio_interval

RESAMPLES = 20000  # bootstrap resamples per interval (exact draws: cheap enough for every check)
LATENCY_QUANTILES = {"p95 latency": 95.0, "median latency": 50.0}


@dataclass
class Check:
    name: str
    baseline: float | None  # None: a check on the candidate alone (its budgets)
    candidate: float | None
    value: float | None  # ratio (latency) or difference (accuracy, macro-F1)
    interval: tuple[float, float] | None
    limit: str
    verdict: str  # pass | REGRESSION | OVER BUDGET | inconclusive | info
    message: str
    unit: str = ""
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return self.verdict in ("REGRESSION", "OVER BUDGET")


def latency_check(name: str, b: float, c: float, ratio: float, lo: float, hi: float, max_slowdown: float,
                  recorded: bool, seconds: float = 0.0) -> Check:
    limit = 1 + max_slowdown
    shown = f"candidate/baseline = {ratio:.2f} [{lo:.2f}, {hi:.2f}]"
    source = " (recorded numbers)" if recorded else ""
    if lo > limit:
        verdict, message = "REGRESSION", f"{name} regressed{source}: {shown} > {limit:.2f}"
    elif hi < limit:
        verdict, message = "pass", f"{name}{source}: {shown}, below {limit:.2f}"
    else:
        verdict = "inconclusive"
        settle = ("both bundles on one host, re-measured, would settle it" if recorded
                  else "more measuring time, --max-seconds, would settle it")
        message = (f"{name}{source}: {shown} includes {limit:.2f}: not shown to be slower beyond "
                   f"{max_slowdown:.0%}, passes ({settle})")
    return Check(name, b, c, ratio, (lo, hi), f"lower bound > {limit:.2f} fails", verdict, message, "ms", seconds)


def accuracy_checks(base: Report, cand: Report, max_drop: float) -> list[Check]:
    b, c = base.accuracy, cand.accuracy
    n = cand.test_examples
    floor = b - max_drop
    drop = b - c
    examples = f"{drop * n:.0f} of {n} test examples" if n else ""
    if c < floor - 1e-12:
        acc = Check("accuracy", b, c, c - b, None, f"< {floor:.4f} fails", "REGRESSION",
                    f"accuracy regressed: candidate {c:.4f} < baseline {b:.4f} - {max_drop:g} "
                    f"(drop {drop:.4f}, {examples})")
    else:
        acc = Check("accuracy", b, c, c - b, None, f"< {floor:.4f} fails", "pass",
                    f"accuracy: candidate {c:.4f}, baseline {b:.4f} (difference {c - b:+.4f}; limit -{max_drop:g})")
    bf, cf = base.macro_f1, cand.macro_f1
    f1 = Check("macro-F1", bf, cf, cf - bf, None, "info only", "info",
               f"macro-F1: candidate {cf:.4f}, baseline {bf:.4f} (difference {cf - bf:+.4f}; reported, not gated)")
    return [acc, f1]


def recorded_latency(base: Report, cand: Report, max_slowdown: float) -> list[Check]:
    """Latency checks from what two reports recorded: their samples, else their intervals."""
    checks = []
    lb, lc = base.latency_ms, cand.latency_ms
    for name, q in LATENCY_QUANTILES.items():
        key = "p95" if q == 95 else "p50"
        b, c = getattr(lb, key), getattr(lc, key)
        if lb.samples and lc.samples:
            ratio, lo, hi = ratio_interval(lb.samples, lc.samples, q, RESAMPLES)
        else:
            ratio, lo, hi = ratio_interval_from_cis(b, getattr(lb, f"{key}_ci"), c, getattr(lc, f"{key}_ci"))
        checks.append(latency_check(name, b, c, ratio, lo, hi, max_slowdown, recorded=True))
    return checks


def ratio_interval_from_cis(base: float, base_ci, cand: float, cand_ci) -> tuple[float, float, float]:
    """Ratio interval from two recorded 95% intervals (no samples): normal on the log scale."""
    se = lambda ci: (math.log(ci[1]) - math.log(ci[0])) / (2 * 1.96)  # noqa: E731
    ratio = cand / base
    spread = 1.96 * math.hypot(se(base_ci), se(cand_ci))
    return ratio, ratio * math.exp(-spread), ratio * math.exp(spread)


def budget_checks(cand: Report) -> list[Check]:
    """The candidate's target budgets, as bench judged them (edgetune.budgets): a miss fails, unchecked is info."""
    from edgetune import budgets

    checks = []
    for name, b in cand.budgets.items():
        verdict = "info" if b.ok is None else "pass" if b.ok else "OVER BUDGET"
        message = budgets.miss_message(name, b, cand) if b.ok is False else budgets.describe(name, b, cand.target)
        limit = f"{'>=' if name.startswith('min_') else '<='} {b.limit}"
        unit = "ms" if name.endswith("_ms") else ""
        checks.append(Check(f"budget {name}", None, b.value, None, None, limit, verdict, message, unit))
    return checks
