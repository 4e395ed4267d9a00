"""The runtime's timing loop and its stop rules, on a trivial workload (edgetune.runtime)."""

from __future__ import annotations

import numpy as np

from edgetune.recipe import BenchConfig
from edgetune.runtime import Latency, Runner, StopRule, measure, percentile_ci, time_interleaved


def measure_one(run, feeds, cfg: BenchConfig) -> Latency:
    return measure({"model": Runner(run, feeds)}, StopRule.of(cfg))["model"]


def test_measure_replays_the_feeds_in_turn_after_warm_up():
    seen = []
    cfg = BenchConfig(warmup_runs=3, min_runs=50, max_runs=100, max_seconds=600, ci_relative_halfwidth=0)
    result = measure_one(seen.append, ["a", "b", "c"], cfg)
    assert seen[:3] == ["a", "b", "c"]  # warm-up
    assert seen[3:9] == ["a", "b", "c", "a", "b", "c"]
    assert len(seen) == 3 + len(result.samples_ms)
    assert all(s >= 0 for s in result.samples_ms)


def test_measure_never_exceeds_max_runs():
    cfg = BenchConfig(warmup_runs=0, min_runs=50, max_runs=120, max_seconds=600, ci_relative_halfwidth=0)
    result = measure_one(lambda feed: None, [0], cfg)
    assert len(result.samples_ms) == 120
    assert "max_runs" in result.stopped_because


def test_measure_takes_at_least_min_runs_even_when_time_is_up():
    cfg = BenchConfig(warmup_runs=0, min_runs=200, max_runs=1000, max_seconds=0, ci_relative_halfwidth=0)
    result = measure_one(lambda feed: None, [0], cfg)
    assert 200 <= len(result.samples_ms) < 1000
    assert "max_seconds" in result.stopped_because


def test_interleaved_blocks_replay_the_same_positions_and_rotate_who_goes_first():
    calls = []
    runners = [Runner(lambda feed, who=who: calls.append((who, feed)), [0, 1, 2]) for who in "AB"]
    samples, reason = time_interleaved(runners, lambda s, t: "done" if len(s[0]) >= 4 else None, block=2, rewarm=1)
    assert reason == "done" and [len(s) for s in samples] == [4, 4]
    # round 1: A re-warms on the feed before the block, then times 0, 1; B the same; round 2 starts with B.
    assert calls == [("A", 2), ("A", 0), ("A", 1), ("B", 2), ("B", 0), ("B", 1),
                     ("B", 1), ("B", 2), ("B", 0), ("A", 1), ("A", 2), ("A", 0)]


def test_stop_rule_reads_the_recipe_bench_section_and_a_settings_mapping_alike():
    cfg = BenchConfig(warmup_runs=1, min_runs=2, max_runs=3, max_seconds=4.0, ci_relative_halfwidth=0.5)
    assert StopRule.of(cfg) == StopRule.of({"warmup_runs": 1, "min_runs": 2, "max_runs": 3, "max_seconds": 4.0,
                                            "ci_relative_halfwidth": 0.5, "seed": 7})


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
