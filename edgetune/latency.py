"""Latency sampling with an adaptive stop: run until the p95's bootstrap interval is narrow enough."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from edgetune.console import progress
from edgetune.recipe import BenchConfig


def percentile_ci(samples, q: float = 95, resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of the q-th percentile."""
    samples = np.asarray(samples)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(samples), size=(resamples, len(samples)))
    estimates = np.percentile(samples[picks], q, axis=1)
    lo, hi = np.percentile(estimates, [2.5, 97.5])
    return float(lo), float(hi)


@dataclass
class Latency:
    samples_ms: list[float]
    stopped_because: str

    def summary(self) -> dict:
        s = np.asarray(self.samples_ms)
        lo, hi = percentile_ci(s, 95, resamples=2000)
        return {
            "p50": float(np.percentile(s, 50)),
            "p95": float(np.percentile(s, 95)),
            "p99": float(np.percentile(s, 99)),
            "p95_ci": [lo, hi],
            "p50_ci": list(percentile_ci(s, 50, resamples=2000)),
            "mean": float(s.mean()),
            "runs": len(s),
            "stopped_because": self.stopped_because,
        }


def measure(run_one, feeds: list, cfg: BenchConfig, desc: str = "benchmarking") -> Latency:
    """Time `run_one(feed)` over `feeds` in turn (replaying real inputs) until the p95 is pinned down."""
    for i in range(cfg.warmup_runs):
        run_one(feeds[i % len(feeds)])
    samples: list[float] = []
    started = time.perf_counter()
    reason = f"max_runs ({cfg.max_runs}) reached"
    with progress() as bar:
        task = bar.add_task(desc, total=cfg.max_runs)
        while len(samples) < cfg.max_runs:
            for _ in range(50):
                feed = feeds[len(samples) % len(feeds)]
                t0 = time.perf_counter_ns()
                run_one(feed)
                samples.append((time.perf_counter_ns() - t0) / 1e6)
            bar.update(task, completed=len(samples))
            if len(samples) >= cfg.min_runs and len(samples) % 100 == 0:
                lo, hi = percentile_ci(samples, 95, resamples=300)
                p95 = float(np.percentile(samples, 95))
                if (hi - lo) / 2 <= cfg.ci_relative_halfwidth * p95:
                    reason = f"p95 interval within ±{cfg.ci_relative_halfwidth:.0%}"
                    break
            if time.perf_counter() - started > cfg.max_seconds and len(samples) >= cfg.min_runs:
                reason = f"max_seconds ({cfg.max_seconds:g}) reached"
                break
    return Latency(samples, reason)
