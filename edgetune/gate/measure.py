"""Re-measuring two bundles in one process: the runtime's interleaved loop, with the gate's own stop rule.

Epochs: every EPOCH_SECONDS both sessions are closed and opened again, in the other order. Two sessions of one and
the same model run a few percent apart in one process (memory placement), so one pair of sessions is one draw of
that effect; fresh pairs in alternating order average it out instead of reporting it as a slowdown.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from edgetune import runtime
from edgetune.gate.builds import Build, GateError
from edgetune.gate.verdict import LATENCY_QUANTILES, RESAMPLES

# Defaults chosen with benchmarks/gate/run.py (see benchmarks/results/gate.md).
MAX_SECONDS = 12.0  # cap on interleaved measuring time per gate (warm-up excluded); after half of it, only a
#                    gate whose ratio estimate is above the limit but whose interval still includes it goes on
MIN_SECONDS = 1.0  # measure at least this long ...
MIN_RUNS = 400  # ... and at least this many timed runs per bundle before an early stop
BLOCK_SECONDS = 0.01  # length of one block of consecutive runs of one bundle
EPOCH_SECONDS = 1.5  # both sessions are opened afresh (in the other order) this often
CHECK_EVERY_SECONDS = 0.25  # how often the stopping rule is evaluated
WARMUP_RUNS = 30  # per bundle, before timing


@dataclass
class Measurement:
    base_ms: list[float]
    cand_ms: list[float]
    seconds: float
    block: int
    threads: int
    provider: str
    stopped_because: str
    inputs: str
    epochs: int = 1  # session pairs used


@dataclass
class RatioStop:
    """The gate's stop rule for runtime.time_interleaved. Stops early (after min_seconds and min_runs per bundle)
    once one ratio interval lies wholly above `limit` (a regression whatever the other says; only from the second
    epoch on, so one unlucky session pair cannot fail a build) or every one lies wholly below it, or, after half of
    max_seconds, when no ratio is even estimated above the limit; otherwise at max_seconds."""
    limit: float
    max_seconds: float
    min_seconds: float
    min_runs: int
    early_stop: bool = True
    epoch: int = 0  # advanced by SessionPairs
    next_check: float = 0.0

    def __call__(self, samples: list, elapsed: float) -> str | None:
        if elapsed >= self.max_seconds:
            return f"time cap ({self.max_seconds:g} s) reached"
        if not self.early_stop or elapsed < max(self.next_check, self.min_seconds) or len(samples[0]) < self.min_runs:
            return None
        self.next_check = elapsed + CHECK_EVERY_SECONDS
        # The very computation the verdict uses (same resamples, same seed): a stop and its verdict agree.
        intervals = [runtime.ratio_interval(samples[0], samples[1], q, RESAMPLES) for q in LATENCY_QUANTILES.values()]
        if self.epoch >= 1 and any(lo > self.limit for _, lo, _ in intervals):
            return f"a ratio interval lies wholly above {self.limit:g}"
        if all(hi < self.limit for _, _, hi in intervals):
            return f"every ratio interval lies wholly below {self.limit:g}"
        if elapsed >= self.max_seconds / 2 and all(ratio <= self.limit for ratio, _, _ in intervals):
            # Half the cap spent and no ratio even estimated above the limit: more time would not fail it.
            return f"no ratio above {self.limit:g} after {self.max_seconds / 2:g} s"
        return None


class SessionPairs:
    """Opens both bundles' sessions, and every `epoch_seconds` reopens them in the other order (the `between` hook)."""

    def __init__(self, builds: tuple[Build, Build], threads: int, provider: str, epoch_seconds: float, stop: RatioStop):
        self.builds, self.threads, self.provider = builds, threads, provider
        self.epoch_seconds, self.stop = epoch_seconds, stop
        self.runners: list[runtime.Runner] = []
        self.warm_runs = 3
        self.epoch_started = time.perf_counter()

    def open(self, texts: list[str], batch: int, length: int | None) -> list[runtime.Runner]:
        for build in self.builds:
            try:
                tokenizer = runtime.load_tokenizer(build.bundle)
                session = runtime.open_session(build.bundle / "model.onnx", self.threads, self.provider)
            except Exception as err:  # a damaged bundle: say which one
                raise GateError(f"{build.role} bundle {build.bundle} does not load: {err}") from None
            feeds = runtime.latency_feeds(texts, tokenizer, session, batch, length, seed=0)
            self.runners.append(runtime.Runner(_runner(session), feeds))
        if not self.runners[0].feeds or len(self.runners[0].feeds) != len(self.runners[1].feeds):
            raise GateError(f"no inputs to replay: {len(texts)} texts for batch size {batch}")
        return self.runners

    def __call__(self, rounds: int, elapsed: float) -> None:
        if time.perf_counter() - self.epoch_started < self.epoch_seconds:
            return
        self.stop.epoch += 1
        for runner in self.runners:  # close both before opening: the new pair may take the old one's memory
            runner.run = None
        for side in ((1, 0) if self.stop.epoch % 2 else (0, 1)):
            model = self.builds[side].bundle / "model.onnx"
            self.runners[side].run = _runner(runtime.open_session(model, self.threads, self.provider))
        runtime.warm_up(self.runners, self.warm_runs)
        self.epoch_started = time.perf_counter()


def _runner(session):
    return lambda feed: session.run(None, feed)


def measure_interleaved(base: Build, cand: Build, texts: list[str], *, threads: int, provider: str,
                        max_slowdown: float, max_seconds: float | None = None, min_seconds: float | None = None,
                        min_runs: int | None = None, block_seconds: float | None = None,
                        epoch_seconds: float | None = None, early_stop: bool = True, inputs: str = "",
                        progress=None) -> Measurement:
    """Time both bundles in alternating blocks (A B, B A, ...) over the same replayed inputs until the verdict is
    clear: runtime.time_interleaved with RatioStop, sessions reopened by SessionPairs."""
    max_seconds = MAX_SECONDS if max_seconds is None else max_seconds
    stop = RatioStop(1 + max_slowdown, max_seconds, MIN_SECONDS if min_seconds is None else min_seconds,
                     MIN_RUNS if min_runs is None else min_runs, early_stop)
    pairs = SessionPairs((base, cand), threads, provider, EPOCH_SECONDS if epoch_seconds is None else epoch_seconds,
                         stop)
    length = ((cand.manifest() or {}).get("material", {}).get("target", {}) or {}).get("sequence_length")
    runners = pairs.open(texts, cand.report.latency_ms.batch_size, length)
    runtime.warm_up(runners, WARMUP_RUNS)
    t0 = time.perf_counter()
    runtime.warm_up(runners, 10)
    per_run = (time.perf_counter() - t0) / (2 * 10)
    block = int(min(50, max(5, round((BLOCK_SECONDS if block_seconds is None else block_seconds) / max(per_run, 1e-6)))))
    pairs.warm_runs = max(3, block)
    started = time.perf_counter()
    pairs.epoch_started = started
    samples, reason = runtime.time_interleaved(runners, stop, block=block, rewarm=1, between=pairs, on_round=progress)
    return Measurement(samples[0], samples[1], time.perf_counter() - started, block, threads, provider, reason,
                       inputs, stop.epoch + 1)
