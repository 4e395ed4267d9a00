"""Latency sampling: the stop rules and the summary (edgetune.latency, on a trivial workload)."""

from __future__ import annotations

import numpy as np

from edgetune.latency import Latency, measure, percentile_ci
from edgetune.recipe import BenchConfig


def test_measure_replays_the_feeds_in_turn_after_warm_up():
    seen = []
    cfg = BenchConfig(warmup_runs=3, min_runs=50, max_runs=100, max_seconds=600, ci_relative_halfwidth=0)
    result = measure(seen.append, ["a", "b", "c"], cfg)
    assert seen[:3] == ["a", "b", "c"]  # warm-up
    assert seen[3:9] == ["a", "b", "c", "a", "b", "c"]
    assert len(seen) == 3 + len(result.samples_ms)
    assert all(s >= 0 for s in result.samples_ms)


def test_measure_never_exceeds_max_runs():
    cfg = BenchConfig(warmup_runs=0, min_runs=50, max_runs=120, max_seconds=600, ci_relative_halfwidth=0)
    result = measure(lambda feed: None, [0], cfg)
    assert len(result.samples_ms) <= 120
    assert "max_runs" in result.stopped_because


def test_measure_takes_at_least_min_runs_even_when_time_is_up():
    cfg = BenchConfig(warmup_runs=0, min_runs=200, max_runs=1000, max_seconds=0, ci_relative_halfwidth=0)
    result = measure(lambda feed: None, [0], cfg)
    assert 200 <= len(result.samples_ms) < 1000
    assert "max_seconds" in result.stopped_because


def test_summary_percentiles_are_ordered_and_ci_brackets_p95():
    samples = list(np.random.default_rng(0).lognormal(0.0, 0.3, size=500))
    summary = Latency(samples, "test").summary()
    assert summary["p50"] <= summary["p95"] <= summary["p99"]
    assert summary["p95_ci"][0] <= summary["p95"] <= summary["p95_ci"][1]
    assert summary["runs"] == 500
    assert summary["mean"] == np.mean(samples)


def test_percentile_ci_is_reproducible_and_narrows_with_more_samples():
    rng = np.random.default_rng(1)
    small, large = rng.normal(10, 1, 100), rng.normal(10, 1, 10000)
    assert percentile_ci(small) == percentile_ci(small)
    lo_s, hi_s = percentile_ci(small)
    lo_l, hi_l = percentile_ci(large)
    assert hi_l - lo_l < hi_s - lo_s
