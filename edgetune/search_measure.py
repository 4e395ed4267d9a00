"""Score, weigh and time every search candidate for the target, with the runtime the bench uses.

Accuracy on validation (what the search chooses by) and on test (what it reports); size of the model that ships;
p95 on the target from the best source there is, named in every row and in the report:
  device    the target has a `remote`: each candidate's bundle is timed on the board over SSH;
  host      this host matches the target profile: its own interleaved timing;
  estimate  otherwise: the roofline estimate (edgetune.roofline) scaled from this host's timing, never this
            host's number presented as the target's.
This host times every candidate interleaved in one run (round-robin blocks), so the load on a shared machine
lands on all of them alike.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from edgetune import runtime
from edgetune.console import log, progress
from edgetune.data import load_dataset
from edgetune.errors import BadInput
from edgetune.recipe import Recipe
from edgetune.report_json import SearchCandidate
from edgetune.targets import Target


def latency_source(target: Target, host: dict) -> tuple[str, str]:
    """(device | host | estimate, a sentence saying where the p95 column comes from)."""
    from edgetune.host import target_mismatch

    if target.remote is not None:
        return "device", f"p95 measured on {target.name} itself over SSH ({target.remote.address})"
    mismatch = target_mismatch(target, host)
    if mismatch is None:
        return "host", f"p95 measured on this host, which matches the {target.name} profile"
    if target.peak_gflops.fp32 and target.memory_bandwidth_gbs:
        return "estimate", (f"ESTIMATE, not measured: p95 on {target.name} by roofline (edgetune.roofline), scaled "
                            f"from this host's timing. {mismatch}")
    if target.budgets.p95_ms is not None:
        raise BadInput(f"target {target.name} has a p95 budget, but this host is not the target, the profile has no "
                       f"remote and no peak_gflops / memory_bandwidth_gbs for an estimate; add one of them to "
                       f"{target.source or 'its profile'} so the search can judge p95")
    return "none", f"no p95 for {target.name}: not at hand, no remote, no roofline peaks (and no p95 budget)"


def accuracy(texts: list[str], labels: list[int], tokenizer, session) -> float:
    return float(np.mean(runtime.logits(texts, tokenizer, session).argmax(-1) == np.asarray(labels)))


def measure(trained: list, recipe: Recipe, target: Target) -> tuple[list[SearchCandidate], str, str]:
    """A SearchCandidate per trained candidate (budgets not yet judged), the p95 source and its sentence."""
    from edgetune import host as hostinfo
    from edgetune.stages.bench import folder_length

    build_host = hostinfo.describe(target)
    source, note = latency_source(target, build_host)
    data = load_dataset(recipe.data, recipe.seed)
    test, validation = data.test, data.validation
    opened = {}
    for t in trained:
        length = folder_length(recipe, t.quantize_dir, data)
        tokenizer = runtime.load_tokenizer(t.quantize_dir, runtime.preprocess_settings(t.quantize_dir, length))
        opened[t.candidate.name] = (tokenizer, runtime.open_session(t.quantize_dir / "model.onnx",
                                                                    build_host["threads"]), length)
    rows = []
    for t in trained:
        tokenizer, session, _ = opened[t.candidate.name]
        rows.append(SearchCandidate(
            name=t.candidate.name, layers=list(t.candidate.layers), method=t.candidate.method,
            validation_accuracy=accuracy(list(validation.texts), list(validation.labels), tokenizer, session),
            test_accuracy=accuracy(list(test.texts), list(test.labels), tokenizer, session),
            size_bytes=(t.quantize_dir / "model.onnx").stat().st_size, p95_ms=None, host_p95_ms=0.0,
            within_budgets=False, train_seconds=t.train_seconds, quantize_seconds=t.quantize_seconds, reused=t.reused))
    timed = time_on_host(opened, list(test.texts), target, recipe)
    for t, row in zip(trained, rows):
        summary = timed[row.name]
        row.host_p95_ms = summary["p95"]
        row.p95_ms = target_p95(source, t, summary, build_host["threads"], opened[row.name][2], list(test.texts),
                                recipe, target)
    return rows, source, note


def time_on_host(opened: dict, texts: list[str], target: Target, recipe: Recipe) -> dict[str, dict]:
    """Every candidate interleaved in one run over the replayed test texts: name -> latency summary + lengths."""
    feeds = {name: runtime.latency_feeds(texts, tok, session, target.batch_size, target.sequence_length, recipe.seed)
             for name, (tok, session, _) in opened.items()}
    runners = {name: runtime.Runner(lambda feed, s=opened[name][1]: s.run(None, feed), feeds[name]) for name in opened}
    rule = runtime.StopRule.of(recipe.bench)
    with progress() as bar:
        task = bar.add_task(f"timing {len(opened)} candidates interleaved", total=rule.max_runs)
        latency = runtime.measure(runners, rule, on_round=lambda done, _: bar.update(task, completed=done))
    result = {}
    for name, lat in latency.items():
        lengths = [len(f["input_ids"][0]) for f in feeds[name]]
        result[name] = lat.summary() | {"batch_size": target.batch_size, "sequence_length": {
            "min": min(lengths), "median": float(np.median(lengths)), "max": max(lengths)}}
    return result


def target_p95(source: str, trained, summary: dict, threads: int, length: int, texts: list[str], recipe: Recipe,
               target: Target) -> float | None:
    from edgetune import roofline

    model = trained.quantize_dir / "model.onnx"
    if source == "host":
        return summary["p95"]
    if source == "estimate":
        estimate = roofline.estimate_latency(model, target, summary | {"threads": threads})
        log(f"ESTIMATE, not measured: {trained.candidate.name} p95 ≈ {estimate['p95_ms']:.2f} ms on {target.name}")
        return float(estimate["p95_ms"])
    if source == "device":
        return device_p95(trained, length, texts, recipe, target)
    return None


def device_p95(trained, length: int, texts: list[str], recipe: Recipe, target: Target) -> float:
    """The candidate's bundle timed on the board over SSH (edgetune.remote), as the bench times the shipped one."""
    from edgetune import remote
    from edgetune.stages.bench import assemble_bundle

    with tempfile.TemporaryDirectory(prefix="edgetune-search-") as scratch:
        bundle = Path(scratch) / "bundle"
        assemble_bundle(trained.quantize_dir, bundle, length, target.intra_op_threads)
        result = remote.remote_bench(bundle, target, recipe.bench, texts, seed=recipe.seed)
    p95 = float(result["latency_ms"]["p95"])
    log(f"on {result['remote']['address']}: {trained.candidate.name} p95 {p95:.2f} ms")
    return p95
