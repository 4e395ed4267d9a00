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

Exit codes: 0 pass, 1 regression, 2 error (missing or unfinished build, different targets or test sets).
No torch: this module imports onnxruntime, tokenizers and numpy only, so a CI job starts it in a second.
"""

from __future__ import annotations

import json
import math
import os
import platform
import socket
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edgetune.errors import BadInput
from edgetune.latency import bootstrap_percentile, ratio_interval  # noqa: F401  (gate.bootstrap_percentile is tested)

# Defaults chosen with benchmarks/gate/run.py (see benchmarks/results/gate.md).
MAX_SECONDS = 12.0  # cap on interleaved measuring time per gate (warm-up excluded); after half of it, only a
#                    gate whose ratio estimate is above the limit but whose interval still includes it goes on
MIN_SECONDS = 1.0  # measure at least this long ...
MIN_RUNS = 400  # ... and at least this many timed runs per bundle before an early stop
BLOCK_SECONDS = 0.01  # length of one block of consecutive runs of one bundle
EPOCH_SECONDS = 1.5  # both sessions are opened afresh (in the other order) this often
CHECK_EVERY_SECONDS = 0.25  # how often the stopping rule is evaluated
WARMUP_RUNS = 30  # per bundle, before timing
RESAMPLES = 20000  # bootstrap resamples per interval (exact draws: cheap enough for every check)
LATENCY_QUANTILES = {"p95 latency": 95.0, "median latency": 50.0}


class GateError(BadInput):
    """Bad input to the gate (missing file, unfinished build, builds that cannot be compared): exit 2."""


# --- bootstrap ---------------------------------------------------------------------------------------------

def ratio_interval_from_cis(base: float, base_ci, cand: float, cand_ci) -> tuple[float, float, float]:
    """Ratio interval from two recorded 95% intervals (no samples): normal on the log scale."""
    se = lambda ci: (math.log(ci[1]) - math.log(ci[0])) / (2 * 1.96)  # noqa: E731
    ratio = cand / base
    spread = 1.96 * math.hypot(se(base_ci), se(cand_ci))
    return ratio, ratio * math.exp(-spread), ratio * math.exp(spread)


# --- reading builds ----------------------------------------------------------------------------------------

REQUIRED = ("target", "accuracy", "macro_f1", "test_examples", "latency_ms")


@dataclass
class Build:
    role: str  # baseline | candidate
    report_path: Path
    report: dict
    bundle: Path  # may not exist

    @property
    def on_host(self) -> bool:
        return (self.bundle / "model.onnx").is_file()

    def manifest(self) -> dict | None:
        try:
            return json.loads((self.bundle / "manifest.json").read_text())
        except (OSError, ValueError):
            return None


def load_build(arg: str | Path, role: str) -> Build:
    """A report.json or a build folder; every way it can be unusable is a GateError naming the path."""
    path = Path(arg)
    if path.is_dir():
        report_path = path / "report.json"
        if not report_path.is_file():
            finished = sorted(p.parent.name for p in path.glob("*/report.json"))
            if finished:
                hint = (f"it looks like an --out folder; pass one target's folder: "
                        f"{', '.join(str(path / t) for t in finished)}")
            elif (path / "bundle").is_dir() or path.name == "bundle":
                hint = "the build never finished (the bench stage writes report.json last); rebuild it"
            else:
                hint = "pass a build folder (--out DIR/<target>) or its report.json"
            raise GateError(f"{role} {path}: no report.json in this folder; {hint}")
    elif path.is_file():
        report_path = path
    else:
        raise GateError(f"{role} {path}: no such file or folder")
    try:
        report = json.loads(report_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise GateError(f"{role} {report_path}: not a readable report.json ({err})") from None
    if not isinstance(report, dict):
        raise GateError(f"{role} {report_path}: not an edgetune report (a JSON object was expected)")
    missing = [k for k in REQUIRED if k not in report]
    missing += [f"latency_ms.{k}" for k in ("p50", "p95") if k not in report.get("latency_ms", {})]
    if missing:
        raise GateError(f"{role} {report_path}: not an edgetune report.json (missing {', '.join(missing)})")
    return Build(role, report_path, report, report_path.parent / "bundle")


def check_comparable(base: Build, cand: Build) -> list[str]:
    """Refuse builds whose numbers mean different things; returns notes on what could not be checked."""
    b, c = base.report, cand.report
    if b["target"] != c["target"]:
        raise GateError(f"different targets: baseline {base.report_path} is {b['target']}, candidate "
                        f"{cand.report_path} is {c['target']}; gate builds of the same target")
    if b["test_examples"] != c["test_examples"]:
        raise GateError(f"different test sets: baseline was evaluated on {b['test_examples']} test examples, "
                        f"candidate on {c['test_examples']}; accuracy is only comparable on the same split")
    notes = []
    hb, hc = b.get("test_set_sha256"), c.get("test_set_sha256")
    if hb and hc and hb != hc:
        raise GateError(f"different test sets: test_set_sha256 {hb[:12]}… (baseline) vs {hc[:12]}… (candidate), "
                        f"both {b['test_examples']} examples; accuracy is only comparable on the same split")
    if not (hb and hc):
        older = [x.role for x in (base, cand) if not x.report.get("test_set_sha256")]
        notes.append(f"{' and '.join(older)} report{'s have' if len(older) > 1 else ' has'} no test_set_sha256 "
                     f"(built before edgetune recorded it): test sets compared by size only ({b['test_examples']} "
                     "examples)")
    return notes


# --- measuring ---------------------------------------------------------------------------------------------

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


def replay_texts(cand: Build, inputs: Path | None) -> tuple[list[str] | None, str]:
    """The texts to replay and where they came from, or (None, why not)."""
    from edgetune.artifacts import file_sha256
    from edgetune.data import read_csv

    if inputs is not None:
        if not Path(inputs).is_file():
            raise GateError(f"--inputs {inputs}: file not found")
        return [r["text"].strip() for r in read_csv(Path(inputs), ("text",))], f"{inputs} (--inputs)"
    manifest = cand.manifest() or {}
    test = manifest.get("material", {}).get("config", {}).get("data", {}).get("test")
    if not test:
        return None, f"the candidate bundle's manifest ({cand.bundle / 'manifest.json'}) does not name its test split"
    if not Path(test).is_file():
        return None, f"the candidate's test split {test} is not on this host (pass --inputs CSV to replay one)"
    recorded = cand.report.get("test_set_sha256")
    if recorded and file_sha256(Path(test)) != recorded:
        return None, f"the candidate's test split {test} changed since the build (sha256 differs from the report)"
    return [r["text"].strip() for r in read_csv(Path(test), ("text",))], f"candidate test split {test}"


def gate_threads(base: Build, cand: Build) -> int:
    """The candidate target's intra-op threads, capped at this host's cores (as the bench stage does)."""
    manifest = cand.manifest() or {}
    target = manifest.get("material", {}).get("target", {})
    wanted = target.get("threads") or target.get("cores") or cand.report.get("host", {}).get("threads") or 1
    return max(1, min(int(wanted), os.cpu_count() or 1))


def measure_interleaved(base: Build, cand: Build, texts: list[str], *, threads: int, provider: str,
                        max_slowdown: float, max_seconds: float | None = None, min_seconds: float | None = None,
                        min_runs: int | None = None, block_seconds: float | None = None,
                        epoch_seconds: float | None = None, early_stop: bool = True, inputs: str = "",
                        progress=None) -> Measurement:
    """Time both bundles in alternating blocks over the same replayed inputs until the verdict is clear.

    Epochs: every `epoch_seconds` both sessions are closed and opened again, in the other order. Two sessions
    of one and the same model run a few percent apart in one process (memory placement; the one created later
    was slower here), so one pair of sessions is one draw of that effect; fresh pairs in alternating order
    average it out instead of reporting it as a slowdown.

    Stops early (after min_seconds and min_runs per bundle) once one ratio interval lies wholly above
    1 + max_slowdown (a regression whatever the other says; only from the second epoch on, so one unlucky
    session pair cannot fail a build) or every one lies wholly below it, or, after half of max_seconds, when
    no ratio is even estimated above the limit; otherwise at max_seconds.
    """
    import onnxruntime as ort

    from edgetune import bundle_predict
    from edgetune.stages.bench import latency_feeds, session_options

    max_seconds = MAX_SECONDS if max_seconds is None else max_seconds
    min_seconds = MIN_SECONDS if min_seconds is None else min_seconds
    min_runs = MIN_RUNS if min_runs is None else min_runs
    block_seconds = BLOCK_SECONDS if block_seconds is None else block_seconds
    epoch_seconds = EPOCH_SECONDS if epoch_seconds is None else epoch_seconds
    batch = int(cand.report["latency_ms"].get("batch_size", 1))
    length = ((cand.manifest() or {}).get("material", {}).get("target", {}) or {}).get("sequence_length")
    builds = (base, cand)
    options = session_options(threads)
    sessions, feeds = [], []
    for build in builds:
        try:
            tokenizer, session, _ = bundle_predict.load(build.bundle, options, (provider,))
        except Exception as err:  # a damaged bundle: say which one
            raise GateError(f"{build.role} bundle {build.bundle} does not load: {err}") from None
        sessions.append(session)
        feeds.append(latency_feeds(texts, tokenizer, session, batch, length, seed=0))
    if not feeds[0] or len(feeds[0]) != len(feeds[1]):
        raise GateError(f"no inputs to replay: {len(texts)} texts for batch size {batch}")
    n_feeds = len(feeds[0])

    def warm(runs: int) -> float:
        t0 = time.perf_counter()
        for i in range(runs):  # both, alternating
            for side in (0, 1):
                sessions[side].run(None, feeds[side][i % n_feeds])
        return (time.perf_counter() - t0) / (2 * runs)

    warm(WARMUP_RUNS)
    per_run = warm(10)
    block = int(min(50, max(5, round(block_seconds / max(per_run, 1e-6)))))

    samples: tuple[list[float], list[float]] = ([], [])
    position = 0  # index into the feeds, shared: block i of A and block i of B replay the same inputs
    reason = f"time cap ({max_seconds:g} s) reached"
    limit = 1 + max_slowdown
    started = time.perf_counter()
    epoch, epoch_started = 0, started
    next_check = started + min_seconds
    rounds = 0
    clock = time.perf_counter_ns
    while True:
        order = (0, 1) if rounds % 2 == 0 else (1, 0)  # A B, B A, A B, ...: neither side always goes first
        for side in order:
            run, fs, out = sessions[side].run, feeds[side], samples[side]
            run(None, fs[(position - 1) % n_feeds])  # untimed: re-warm after the other model ran
            for j in range(block):
                feed = fs[(position + j) % n_feeds]
                t = clock()
                run(None, feed)
                out.append((clock() - t) / 1e6)
        position += block
        rounds += 1
        now = time.perf_counter()
        if progress:
            progress(len(samples[0]), now - started)
        if now - started >= max_seconds:
            break
        if early_stop and now >= next_check and len(samples[0]) >= min_runs:
            next_check = now + CHECK_EVERY_SECONDS
            # The very computation the verdict uses (same resamples, same seed): a stop and its verdict agree.
            intervals = [ratio_interval(samples[0], samples[1], q, RESAMPLES) for q in LATENCY_QUANTILES.values()]
            if epoch >= 1 and any(lo > limit for _, lo, _ in intervals):
                reason = f"a ratio interval lies wholly above {limit:g}"
                break
            if all(hi < limit for _, _, hi in intervals):
                reason = f"every ratio interval lies wholly below {limit:g}"
                break
            if now - started >= max_seconds / 2 and all(ratio <= limit for ratio, _, _ in intervals):
                # Half the cap spent and no ratio even estimated above the limit: more time would not fail it.
                reason = f"no ratio above {limit:g} after {max_seconds / 2:g} s"
                break
        if now - epoch_started >= epoch_seconds:
            epoch += 1
            sessions = [None, None]  # close both before opening: the new pair may take the old one's memory
            for side in ((1, 0) if epoch % 2 else (0, 1)):
                sessions[side] = ort.InferenceSession(str(builds[side].bundle / "model.onnx"), options,
                                                      providers=[provider])
            warm(max(3, block))
            epoch_started = time.perf_counter()
    return Measurement(samples[0], samples[1], time.perf_counter() - started, block, threads, provider, reason,
                       inputs, epoch + 1)


# --- the checks --------------------------------------------------------------------------------------------

@dataclass
class Check:
    name: str
    baseline: float
    candidate: float
    value: float | None  # ratio (latency) or difference (accuracy, macro-F1)
    interval: tuple[float, float] | None
    limit: str
    verdict: str  # pass | REGRESSION | inconclusive | info
    message: str
    unit: str = ""
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return self.verdict == "REGRESSION"


@dataclass
class GateResult:
    target: str
    baseline: Path
    candidate: Path
    mode: str  # re-measured | recorded
    how: str  # one sentence: what was compared, how
    checks: list[Check]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    measurement: Measurement | None = None

    @property
    def regressions(self) -> list[Check]:
        return [c for c in self.checks if c.failed]

    @property
    def exit_code(self) -> int:
        return 1 if self.regressions else 0


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


def accuracy_checks(base: dict, cand: dict, max_drop: float) -> list[Check]:
    b, c = float(base["accuracy"]), float(cand["accuracy"])
    n = int(cand["test_examples"])
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
    bf, cf = float(base["macro_f1"]), float(cand["macro_f1"])
    f1 = Check("macro-F1", bf, cf, cf - bf, None, "info only", "info",
               f"macro-F1: candidate {cf:.4f}, baseline {bf:.4f} (difference {cf - bf:+.4f}; reported, not gated)")
    return [acc, f1]


def recorded_latency(base: Build, cand: Build, max_slowdown: float) -> list[Check]:
    checks = []
    lb, lc = base.report["latency_ms"], cand.report["latency_ms"]
    for name, q in LATENCY_QUANTILES.items():
        key = "p95" if q == 95 else "p50"
        b, c = float(lb[key]), float(lc[key])
        if lb.get("samples") and lc.get("samples"):
            ratio, lo, hi = ratio_interval(lb["samples"], lc["samples"], q, RESAMPLES)
        elif lb.get(f"{key}_ci") and lc.get(f"{key}_ci"):
            ratio, lo, hi = ratio_interval_from_cis(b, lb[f"{key}_ci"], c, lc[f"{key}_ci"])
        else:
            ratio = lo = hi = c / b
        checks.append(latency_check(name, b, c, ratio, lo, hi, max_slowdown, recorded=True))
    return checks


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
             threads: int | None = None, progress=None) -> GateResult:
    """Compare CANDIDATE with BASELINE (report.json files or build folders); raises GateError (exit 2)."""
    started = time.perf_counter()
    base, cand = load_build(baseline, "baseline"), load_build(candidate, "candidate")
    notes = check_comparable(base, cand)
    provider = cand.report.get("host", {}).get("execution_provider", "CPUExecutionProvider")
    reason = "--recorded given" if recorded else why_not_remeasure(base, cand, provider)
    texts = None
    if reason is None:
        texts, source = replay_texts(cand, inputs)
        if texts is None:
            reason = source
    measurement = None
    if reason is None:
        threads = threads or gate_threads(base, cand)
        load_before = os.getloadavg()[0]
        measurement = measure_interleaved(base, cand, texts, threads=threads, provider=provider,
                                          max_slowdown=max_slowdown, max_seconds=max_seconds, inputs=source,
                                          progress=progress)
        m = measurement
        checks = []
        for name, q in LATENCY_QUANTILES.items():
            ratio, lo, hi = ratio_interval(m.base_ms, m.cand_ms, q, RESAMPLES)
            checks.append(latency_check(name, float(np.percentile(m.base_ms, q)), float(np.percentile(m.cand_ms, q)),
                                        ratio, lo, hi, max_slowdown, recorded=False, seconds=m.seconds))
        from edgetune.host import cpu_model_and_flags

        plural = "s" if m.threads > 1 else ""
        how = (f"re-measured both bundles on this host ({cpu_model_and_flags()[0]}, {platform.machine()}, "
               f"{os.cpu_count()} cores), interleaved in blocks of {m.block} runs, "
               f"{m.threads} intra-op thread{plural}, "
               f"{m.provider}: {len(m.base_ms)} timed runs each in {m.seconds:.1f} s over {m.epochs} session "
               f"pair{'s' if m.epochs > 1 else ''} ({m.stopped_because}); "
               f"inputs: {m.inputs}, tokenized by each bundle's own tokenizer")
        load = max(load_before, os.getloadavg()[0])
        if load > (os.cpu_count() or 1):
            notes.append(f"this host was busy while measuring (1-minute load average {load:.1f} on {os.cpu_count()} "
                         "cores): both bundles shared the slowdown, but the intervals are wider and the tail "
                         "latency is mostly the scheduler's")
        mode = "re-measured"
    else:
        checks = recorded_latency(base, cand, max_slowdown)
        hb, hc = base.report.get("host", {}), cand.report.get("host", {})
        how = (f"compared RECORDED latency from the two reports, not re-measured ({reason}); "
               f"baseline measured on {hb.get('cpu', '?')} with {hb.get('threads', '?')} threads, candidate on "
               f"{hc.get('cpu', '?')} with {hc.get('threads', '?')} threads, at different times")
        if (hb.get("cpu"), hb.get("threads")) != (hc.get("cpu"), hc.get("threads")):
            notes.append("the two reports were measured on different machines or thread counts: their latency "
                         "ratio says as much about the machines as about the models")
        if not (base.report["latency_ms"].get("samples") and cand.report["latency_ms"].get("samples")):
            notes.append("reports without latency samples: ratio intervals combine the recorded 95% intervals "
                         "(log-normal approximation)")
        mode = "recorded"
    checks += accuracy_checks(base.report, cand.report, max_accuracy_drop)
    return GateResult(cand.report["target"], base.report_path, cand.report_path, mode, how, checks, notes,
                      time.perf_counter() - started, measurement)


# --- output ------------------------------------------------------------------------------------------------

def _fmt(check: Check, x: float) -> str:
    return f"{x:.3f} ms" if check.unit == "ms" else f"{x:.4f}"


def table(result: GateResult):
    from rich.table import Table

    t = Table(title=f"edgetune gate: {result.target} ({result.mode})", title_justify="left")
    for column in ("check", "baseline", "candidate", "cand/base or Δ", "95% interval", "limit", "verdict"):
        t.add_column(column)
    colour = {"pass": "green", "REGRESSION": "bold red", "inconclusive": "yellow", "info": "dim"}
    for c in result.checks:
        value = "-" if c.value is None else (f"{c.value:.3f}" if c.unit == "ms" else f"{c.value:+.4f}")
        interval = f"[{c.interval[0]:.3f}, {c.interval[1]:.3f}]" if c.interval else "-"
        t.add_row(c.name, _fmt(c, c.baseline), _fmt(c, c.candidate), value, interval, c.limit,
                  f"[{colour[c.verdict]}]{c.verdict}[/{colour[c.verdict]}]")
    return t


def print_result(result: GateResult, console) -> None:
    console.print(table(result))
    console.print(result.how)
    for note in result.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    for c in result.checks:
        if c.verdict in ("REGRESSION", "inconclusive"):
            style = "bold red" if c.failed else "yellow"
            console.print(f"[{style}]{c.message}[/{style}]")
    if result.regressions:
        console.print(f"[bold red]gate: FAIL[/bold red] ({len(result.regressions)} regression"
                      f"{'s' if len(result.regressions) > 1 else ''}): {result.candidate} vs {result.baseline}")
    else:
        console.print(f"[bold green]gate: PASS[/bold green]: {result.candidate} vs {result.baseline}")


def _suite(name: str, tests: int, failures: int, errors: int, seconds: float) -> tuple[ET.Element, ET.Element]:
    suites = ET.Element("testsuites", name="edgetune gate", tests=str(tests), failures=str(failures),
                        errors=str(errors), time=f"{seconds:.3f}")
    suite = ET.SubElement(suites, "testsuite", name=name, tests=str(tests), failures=str(failures),
                          errors=str(errors), skipped="0", time=f"{seconds:.3f}",
                          timestamp=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
                          hostname=socket.gethostname())
    return suites, suite


def _write(tree_root: ET.Element, path: Path) -> None:
    ET.indent(tree_root)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(tree_root).write(path, encoding="utf-8", xml_declaration=True)


def write_junit(result: GateResult, path: Path) -> None:
    """One testcase per check; <failure> for a regression; numbers also as properties, for scripts."""
    suites, suite = _suite(f"edgetune gate: {result.target}", len(result.checks), len(result.regressions), 0,
                           result.seconds)
    props = ET.SubElement(suite, "properties")
    measured = {"mode": result.mode, "baseline": str(result.baseline), "candidate": str(result.candidate),
                "how": result.how}
    if result.measurement:
        m = result.measurement
        measured |= {"runs_per_bundle": str(len(m.base_ms)), "measure_seconds": f"{m.seconds:.3f}",
                     "session_pairs": str(m.epochs),
                     "block": str(m.block), "threads": str(m.threads), "stopped_because": m.stopped_because}
    for c in result.checks:
        key = c.name.replace(" ", "_").replace("-", "_").lower()
        measured[f"{key}.baseline"] = repr(c.baseline)
        measured[f"{key}.candidate"] = repr(c.candidate)
        if c.value is not None:
            measured[f"{key}.value"] = repr(c.value)
        if c.interval:
            measured[f"{key}.interval"] = f"{c.interval[0]!r},{c.interval[1]!r}"
        measured[f"{key}.verdict"] = c.verdict
    for k, v in measured.items():
        ET.SubElement(props, "property", name=k, value=v)
    for c in result.checks:
        case = ET.SubElement(suite, "testcase", classname=f"edgetune.gate.{result.target}", name=c.name,
                             time=f"{c.seconds:.3f}")
        if c.failed:
            failure = ET.SubElement(case, "failure", message=c.message, type="regression")
            failure.text = f"{c.message}\n{result.how}\n"
        else:
            ET.SubElement(case, "system-out").text = c.message
    if result.notes:
        ET.SubElement(suite, "system-out").text = "\n".join(result.notes)
    _write(suites, path)


def write_junit_error(message: str, path: Path) -> None:
    """The gate could not run (exit 2): one testcase with an <error>, so CI shows why instead of nothing."""
    suites, suite = _suite("edgetune gate", 1, 0, 1, 0.0)
    case = ET.SubElement(suite, "testcase", classname="edgetune.gate", name="gate inputs", time="0")
    ET.SubElement(case, "error", message=message, type="gate-error").text = message
    _write(suites, path)
