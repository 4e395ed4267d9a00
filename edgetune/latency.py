"""Latency sampling with an adaptive stop: run until the p95's bootstrap interval is narrow enough."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from edgetune.console import progress
from edgetune.recipe import BenchConfig


def percentile_ci(samples, q: float = 95, resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of the q-th percentile."""
    estimates = bootstrap_percentile(samples, q, resamples, np.random.default_rng(seed))
    lo, hi = np.percentile(estimates, [2.5, 97.5])
    return float(lo), float(hi)


def bootstrap_percentile(samples, q: float, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """`resamples` draws of np.percentile(resample, q), a resample being len(samples) draws with replacement.

    Drawn exactly, without materialising the resamples: a resample's k-th order statistic is
    sorted[floor(n * U_k)] with U_k the k-th order statistic of n uniforms, U_k ~ Beta(k + 1, n - k) (0-based),
    and the next one is U_k + (1 - U_k) * Beta(1, n - k - 1). np.percentile's linear interpolation between
    those two is then applied as is. Same distribution as the brute-force bootstrap, at O(resamples) cost.
    """
    x = np.sort(np.asarray(samples, dtype=float))
    n = len(x)
    if n == 1:
        return np.full(resamples, x[0])
    h = (n - 1) * q / 100.0
    k = min(int(math.floor(h)), n - 1)
    frac = h - k
    u_k = rng.beta(k + 1, n - k, resamples)
    at = lambda u: x[np.minimum((u * n).astype(np.int64), n - 1)]  # noqa: E731
    low = at(u_k)
    if frac == 0 or k + 1 >= n:
        return low
    u_next = u_k + (1.0 - u_k) * rng.beta(1, n - k - 1, resamples)
    return low + frac * (at(u_next) - low)


def ratio_interval(base, cand, q: float, resamples: int, seed: int = 0) -> tuple[float, float, float]:
    """(ratio, lo, hi): percentile q of `cand` over that of `base`, and its 95% bootstrap interval."""
    rng = np.random.default_rng(seed)
    ratio = float(np.percentile(cand, q) / np.percentile(base, q))
    draws = bootstrap_percentile(cand, q, resamples, rng) / bootstrap_percentile(base, q, resamples, rng)
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return ratio, float(lo), float(hi)


def speed_verdict(lo: float, hi: float) -> str:
    """How a candidate/base latency ratio's 95% interval reads: the candidate is slower, faster, or neither."""
    return "slower" if lo > 1 else "faster" if hi < 1 else "no clear difference"


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
    return measure_interleaved({"model": (run_one, feeds)}, cfg, desc)["model"]


def measure_interleaved(models: dict, cfg: BenchConfig, desc: str = "benchmarking", block: int = 50,
                        rewarm: int = 5) -> dict[str, Latency]:
    """Time several models round-robin in blocks over their replayed inputs, so that whatever else the host
    does lands on all of them alike. `models`: name -> (run_one, feeds). After a switch, `rewarm` untimed runs
    refill the caches the other model evicted: a device runs one model, and so should its p95.
    Stops when every p95's bootstrap interval is within cfg.ci_relative_halfwidth (after cfg.min_runs each),
    or at cfg.max_runs / max_seconds.
    """
    names = list(models)
    for name in names:
        run_one, feeds = models[name]
        for i in range(cfg.warmup_runs):
            run_one(feeds[i % len(feeds)])
    samples: dict[str, list[float]] = {name: [] for name in names}
    started = time.perf_counter()
    reason = f"max_runs ({cfg.max_runs}) reached"
    rounds = 0
    with progress() as bar:
        task = bar.add_task(desc, total=cfg.max_runs)
        while len(samples[names[0]]) < cfg.max_runs:
            for name in names[rounds % len(names):] + names[: rounds % len(names)]:  # rotate who goes first
                run_one, feeds = models[name]
                out = samples[name]
                for i in range(rewarm if len(names) > 1 else 0):
                    run_one(feeds[(len(out) + i) % len(feeds)])
                for _ in range(min(block, cfg.max_runs - len(out))):
                    feed = feeds[len(out) % len(feeds)]
                    t0 = time.perf_counter_ns()
                    run_one(feed)
                    out.append((time.perf_counter_ns() - t0) / 1e6)
            rounds += 1
            done = len(samples[names[0]])
            bar.update(task, completed=done)
            if done >= cfg.min_runs and all(_narrow(samples[n], cfg) for n in names):
                reason = f"p95 interval within ±{cfg.ci_relative_halfwidth:.0%}"
                break
            if time.perf_counter() - started > cfg.max_seconds and done >= cfg.min_runs:
                reason = f"max_seconds ({cfg.max_seconds:g}) reached"
                break
    return {name: Latency(samples[name], reason) for name in names}


def _narrow(samples: list[float], cfg: BenchConfig) -> bool:
    lo, hi = percentile_ci(samples, 95, resamples=300)
    return (hi - lo) / 2 <= cfg.ci_relative_halfwidth * float(np.percentile(samples, 95))
