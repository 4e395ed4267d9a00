"""The CI regression gate: is a candidate build slower or less accurate than a baseline build?

    edgetune gate --baseline BASE CANDIDATE [--junit FILE] [--max-slowdown 0.05] [--max-accuracy-drop 0.005]

BASE and CANDIDATE are report.json files or build folders (`DIR/<target>`, holding report.json and bundle/).

Latency. When both bundles are on this host they are measured again, here and now, in one process: both
sessions with the same intra-op thread count and execution provider, fed the same replayed inputs (the
candidate's test split, each side tokenized with its own bundle's tokenizer, in the same order), in
alternating short blocks (A B B A A B ...) so that whatever else the machine is doing lands on both. Each
block starts with one untimed run (switching models evicts the other's weights from the cache; the reports
measure the warm steady state, and so does the gate). Every 1.5 s both sessions are opened afresh, in the
other order: two sessions of the very same model can run a few percent apart for as long as they live, and
fresh pairs average that out instead of reporting it as a slowdown. The p95 and median ratios
candidate/baseline get a bootstrap 95% interval (each side resampled independently, ratio of the resampled
percentiles). A check fails only when the interval's LOWER bound exceeds 1 + max_slowdown: noise alone does
not fail a build. Measuring stops (after a minimum) as soon as one interval lies wholly above that limit (from
the second session pair on) or all lie wholly below it; after half the time cap, when no ratio is even
estimated above the limit; else at the cap. An interval still straddling the limit then passes and says it
was inconclusive.

When a bundle is absent (or its execution provider, or the test split to replay, is not on this host) the
gate compares the latency the two reports recorded, and says so: those were measured at different times,
perhaps on different machines.

Accuracy fails when candidate < baseline - max_accuracy_drop. Both builds must be of the same target and
evaluated on the same test split (test_examples, and test_set_sha256 when the reports have it).

With fail_on_budget (`--fail-on-budget`) the candidate's target budgets count too, as bench judged them
(edgetune.budgets): one judged and missed fails the gate; one not checked on the target is shown, not failed.

Exit codes: 0 pass, 1 regression (or a budget missed), 2 error (missing or unfinished build, different targets
or test sets).
No torch: the gate imports edgetune.runtime (onnxruntime, tokenizers, numpy) and nothing from edgetune/stages/, so
a CI job starts it in a second.

    builds.py   reading and comparing the two builds      measure.py  re-measuring them (the runtime's loop)
    verdict.py  the checks and their verdicts             result.py   GateResult and the table
    junit.py    JUnit XML
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np

from edgetune.gate.builds import Build, GateError, check_comparable, gate_threads, load_build, replay_texts
from edgetune.gate.junit import write_junit, write_junit_error
from edgetune.gate.measure import (BLOCK_SECONDS, EPOCH_SECONDS, MAX_SECONDS, MIN_RUNS, MIN_SECONDS, Measurement,
                                   measure_interleaved)
from edgetune.gate.result import GateResult, print_result, table
from edgetune.gate.verdict import (LATENCY_QUANTILES, RESAMPLES, Check, accuracy_checks, budget_checks,
                                   latency_check, recorded_latency)
from edgetune.runtime import bootstrap_percentile, cpu_model_and_flags, ratio_interval

__all__ = ["BLOCK_SECONDS", "EPOCH_SECONDS", "LATENCY_QUANTILES", "MAX_SECONDS", "MIN_RUNS", "MIN_SECONDS",
           "RESAMPLES", "Build", "Check", "GateError", "GateResult", "Measurement", "bootstrap_percentile",
           "gate_threads", "load_build", "measure_interleaved", "print_result", "ratio_interval", "replay_texts",
           "run_gate", "table", "write_junit", "write_junit_error"]


def why_not_remeasure(base: Build, cand: Build, provider: str) -> str | None:
    absent = [f"{x.role} bundle {x.bundle / 'model.onnx'}" for x in (base, cand) if not x.on_host]
    if absent:
        return f"{' and '.join(absent)} not on this host"
    import onnxruntime as ort

    if provider not in ort.get_available_providers():
        return f"this host's onnxruntime lacks {provider}"
    return None


def run_gate(baseline, candidate, *, max_slowdown: float = 0.05, max_accuracy_drop: float = 0.005,
             max_seconds: float | None = None, recorded: bool = False, inputs: Path | None = None,
             threads: int | None = None, progress=None, fail_on_budget: bool = False) -> GateResult:
    """Compare CANDIDATE with BASELINE (report.json files or build folders); raises GateError (exit 2).

    fail_on_budget: also check the candidate's target budgets as bench judged them (a miss fails the gate)."""
    started = time.perf_counter()
    base, cand = load_build(baseline, "baseline"), load_build(candidate, "candidate")
    notes = check_comparable(base, cand)
    provider = cand.report.host.execution_provider
    reason = "--recorded given" if recorded else why_not_remeasure(base, cand, provider)
    texts = None
    if reason is None:
        texts, source = replay_texts(cand, inputs)
        if texts is None:
            reason = source
    measurement = None
    if reason is None:
        load_before = os.getloadavg()[0]
        measurement = measure_interleaved(base, cand, texts, threads=threads or gate_threads(base, cand),
                                          provider=provider, max_slowdown=max_slowdown, max_seconds=max_seconds,
                                          inputs=source, progress=progress)
        checks, how, mode = _remeasured_checks(measurement, max_slowdown, load_before, notes), _how(measurement), "re-measured"
    else:
        checks, how, mode = recorded_latency(base.report, cand.report, max_slowdown), \
            _recorded_how(base, cand, reason, notes), "recorded"
    checks += accuracy_checks(base.report, cand.report, max_accuracy_drop)
    if fail_on_budget:
        checks += budget_checks(cand.report)
    return GateResult(cand.report.target, base.report_path, cand.report_path, mode, how, checks, notes,
                      time.perf_counter() - started, measurement)


def _remeasured_checks(m: Measurement, max_slowdown: float, load_before: float, notes: list[str]) -> list[Check]:
    checks = []
    for name, q in LATENCY_QUANTILES.items():
        ratio, lo, hi = ratio_interval(m.base_ms, m.cand_ms, q, RESAMPLES)
        checks.append(latency_check(name, float(np.percentile(m.base_ms, q)), float(np.percentile(m.cand_ms, q)),
                                    ratio, lo, hi, max_slowdown, recorded=False, seconds=m.seconds))
    load = max(load_before, os.getloadavg()[0])
    if load > (os.cpu_count() or 1):
        notes.append(f"this host was busy while measuring (1-minute load average {load:.1f} on {os.cpu_count()} "
                     "cores): both bundles shared the slowdown, but the intervals are wider and the tail "
                     "latency is mostly the scheduler's")
    return checks


def _how(m: Measurement) -> str:
    plural = "s" if m.threads > 1 else ""
    return (f"re-measured both bundles on this host ({cpu_model_and_flags()[0]}, {platform.machine()}, "
            f"{os.cpu_count()} cores), interleaved in blocks of {m.block} runs, {m.threads} intra-op thread{plural}, "
            f"{m.provider}: {len(m.base_ms)} timed runs each in {m.seconds:.1f} s over {m.epochs} session "
            f"pair{'s' if m.epochs > 1 else ''} ({m.stopped_because}); "
            f"inputs: {m.inputs}, tokenized by each bundle's own tokenizer")


def _recorded_how(base: Build, cand: Build, reason: str, notes: list[str]) -> str:
    hb, hc = base.report.host, cand.report.host
    if (hb.cpu, hb.threads) != (hc.cpu, hc.threads):
        notes.append("the two reports were measured on different machines or thread counts: their latency "
                     "ratio says as much about the machines as about the models")
    if not (base.report.latency_ms.samples and cand.report.latency_ms.samples):
        notes.append("reports without latency samples: ratio intervals combine the recorded 95% intervals "
                     "(log-normal approximation)")
    return (f"compared RECORDED latency from the two reports, not re-measured ({reason}); "
            f"baseline measured on {hb.cpu} with {hb.threads} threads, candidate on "
            f"{hc.cpu} with {hc.threads} threads, at different times")
