"""How far off are edgetune's roofline latency estimates? Checked on the one machine we can measure: this host.

    python benchmarks/roofline/run.py --model int8=OUT/rpi5/bundle/model.onnx --model fp32=OUT_FP32/rpi5/bundle/model.onnx

For each model, latency is measured on this host at batch 1, sequence length 16/32/64/128 (real test texts,
truncated or padded to the length) and 1/2 intra-op threads, all configurations interleaved one inference at a
time (the machine's load falls on all alike). Then every configuration
is estimated from every other one with edgetune.roofline.estimate_latency, the "target" being the x86-avx2
profile with this host's own measured peaks (so the only thing under test is the roofline's scaling across
sequence length and threads, not the datasheet numbers), and compared with its measurement.

Baselines for scale: "same" (the reference's latency, unchanged) and "FLOPs" (the reference's latency x the
ratio of total FLOPs x the ratio of threads). Writes benchmarks/results/roofline.md and roofline.json.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # for benchmarks.result_paths
from benchmarks.result_paths import shown, shown_args
RESULTS = REPO / "benchmarks" / "results"
SEQS = (16, 32, 64, 128)
THREADS = (1, 2)
REFERENCE = (32, 1)
BLOCK = 8  # timed runs per configuration and round
REWARM = 2  # untimed runs before them
LOADS: list[float] = []  # 1-minute load average, once per round


def feeds_at(model_dir: Path, texts: list[str], session, length: int) -> list[dict]:
    from edgetune import runtime

    tokenizer = runtime.load_tokenizer(model_dir, runtime.preprocess_settings(model_dir, length))
    return runtime.latency_feeds(texts, tokenizer, session, 1, length, seed=0)


def measure_all(models: dict[str, Path], texts: list[str], seconds: float) -> dict:
    """Interleaved in short blocks (edgetune.runtime.time_interleaved): every round runs each configuration BLOCK
    times in a row after REWARM untimed runs (which find the caches holding another configuration's weights), the
    configurations' order rotating each round, so the machine's changing load falls on all of them alike."""
    from edgetune import runtime

    keys, runners = [], []
    for name, path in models.items():
        sessions = {threads: runtime.open_session(path, threads) for threads in THREADS}
        for s in SEQS:
            feeds = feeds_at(path.parent, texts, sessions[1], s)
            for t in THREADS:
                keys.append((name, s, t))
                runners.append(runtime.Runner(lambda feed, session=sessions[t]: session.run(None, feed), feeds))
    runtime.warm_up(runners, 10)

    def time_up(_, elapsed):
        LOADS.append(os.getloadavg()[0])
        return "time up" if elapsed >= seconds else None

    samples, _ = runtime.time_interleaved(runners, time_up, block=BLOCK, rewarm=REWARM)
    return {key: {q: float(np.percentile(v, int(q[1:]))) for q in ("p10", "p50", "p95")} | {"runs": len(v)}
            for key, v in zip(keys, samples)}


def estimates(models: dict[str, Path], measured: dict) -> list[dict]:
    from edgetune import roofline
    from edgetune.targets import PeakCompute, load_target

    base = load_target("x86-avx2")
    cores = os.cpu_count() or 1
    per_core = roofline.host_peaks(1)
    rows = []
    for name, path in models.items():
        flops = {s: sum(c["flops"] for c in roofline.op_costs(path, 1, s)) for s in SEQS}
        for (rs, rt), (s, t) in itertools.product(itertools.product(SEQS, THREADS), repeat=2):
            if (rs, rt) == (s, t):
                continue
            ref = measured[name, rs, rt]
            target = replace(base, cores=cores, threads=t, sequence_length=s, batch_size=1,
                             peak_gflops=PeakCompute(fp32=per_core.fp32 * cores, int8=per_core.int8 * cores),
                             memory_bandwidth_gbs=per_core.bandwidth)
            est = roofline.estimate_latency(path, target, {"p50": ref["p50"], "p95": ref["p95"], "threads": rt,
                                                           "batch_size": 1, "sequence_length": rs},
                                            host=roofline.host_peaks(rt))
            truth = measured[name, s, t]
            naive_flops = ref["p50"] * flops[s] / flops[rs] * rt / t
            estimate_p10 = ref["p10"] * est["scale"]  # same scale; p10 is the least disturbed by other jobs
            rows.append({"model": name, "reference": {"sequence_length": rs, "threads": rt, **ref},
                         "estimated": {"sequence_length": s, "threads": t},
                         "estimate_p50": est["p50_ms"], "estimate_p95": est["p95_ms"],
                         "measured_p50": truth["p50"], "measured_p95": truth["p95"],
                         "estimate_p10": estimate_p10, "measured_p10": truth["p10"], "error_p10": estimate_p10 / truth["p10"] - 1,
                         "error_p50": est["p50_ms"] / truth["p50"] - 1, "error_p95": est["p95_ms"] / truth["p95"] - 1,
                         "same_error_p50": ref["p50"] / truth["p50"] - 1, "flops_error_p50": naive_flops / truth["p50"] - 1,
                         "scale": est["scale"], "compute_bound_share": est["graph"]["compute_bound_share"]})
    return rows


def mae(errors) -> float:
    return float(np.mean(np.abs(errors))) * 100


def write(models, measured, rows, meta):
    RESULTS.mkdir(parents=True, exist_ok=True)
    names = {k: shown(v, outside=f"OUT_{k.upper()}", keep=3) for k, v in models.items()}  # no folder of this machine
    (RESULTS / "roofline.json").write_text(json.dumps({
        "meta": meta, "models": names,
        "measured": [{"model": m, "sequence_length": s, "threads": t, **v} for (m, s, t), v in measured.items()],
        "estimates": rows}, indent=1) + "\n")
    lines = ["# Roofline latency estimates vs measurements on this host", "",
             f"Command: `python benchmarks/roofline/run.py {meta['args']}` ({meta['date']}, {meta['minutes']:.1f} min).", "",
             f"Host: {meta['cpu']} ({meta['arch']}, {meta['cores']} cores), onnxruntime {meta['onnxruntime']}, Python "
             f"{meta['python']}. The machine was shared with other work (model training): 1-minute load average "
             f"{meta['load_during'][0]:.1f}-{meta['load_during'][2]:.1f} (median {meta['load_during'][1]:.1f}) while measuring, "
             "where 2 means both cores busy: every configuration competed for the cores, 2-thread ones most. Peaks measured here (edgetune.roofline.host_peaks, per core): "
             f"fp32 {meta['peaks']['fp32']:.1f} GFLOP/s, int8 {meta['peaks']['int8']:.1f} GOP/s, copy bandwidth "
             f"{meta['peaks']['bandwidth']:.1f} GB/s.", "",
             "Batch 1, real test texts truncated/padded to each length. All 16 configurations (2 models x 4 lengths x 2 "
             f"thread counts) measured interleaved: each round runs every configuration {BLOCK + REWARM} times in a row (the first "
             f"{REWARM} not kept: caches still hold another configuration), the order rotating each round, for {meta['seconds']:g} s in "
             "all, so load changes hit all alike. The estimated \"target\" is the "
             "x86-avx2 profile with this host's measured peaks: what is tested is the roofline's scaling across sequence "
             "length and threads (the calibration step), not datasheet peaks. Error = estimate / measured - 1.", "",
             "Models: " + ", ".join(f"{k} = `{names[k]}` ({Path(v).stat().st_size / 1e6:.1f} MB)" if Path(v).exists() else f"{k} = `{names[k]}`"
                                    for k, v in models.items()) + "." + (f" {meta['note']}" if meta.get("note") else ""), "",
             f"## From one reference (sequence {REFERENCE[0]}, {REFERENCE[1]} thread) to every other configuration", ""]
    for model in models:
        lines += [f"### {model}", "", "| seq | threads | measured p10 ms | estimate p10 ms | error p10 | measured p50 ms | estimate p50 ms | error p50 | measured p95 ms | estimate p95 ms | error p95 | compute-bound share |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        ref_rows = [r for r in rows if r["model"] == model and (r["reference"]["sequence_length"], r["reference"]["threads"]) == REFERENCE]
        ref = measured[(model, *REFERENCE)]
        lines.append(f"| {REFERENCE[0]} | {REFERENCE[1]} | {ref['p10']:.3f} | (reference) | | {ref['p50']:.3f} | | | {ref['p95']:.3f} | | | |")
        for r in ref_rows:
            e = r["estimated"]
            lines.append(f"| {e['sequence_length']} | {e['threads']} | {r['measured_p10']:.3f} | {r['estimate_p10']:.3f} | "
                         f"{r['error_p10']:+.0%} | {r['measured_p50']:.3f} | {r['estimate_p50']:.3f} | "
                         f"{r['error_p50']:+.0%} | {r['measured_p95']:.3f} | {r['estimate_p95']:.3f} | {r['error_p95']:+.0%} | "
                         f"{r['compute_bound_share']:.0%} |")
        lines.append("")
    lines += ["## Every configuration estimated from every other (56 pairs per model)", "",
              "Mean absolute error of the p10, p50 and p95 estimates, by the threads of the reference and of the estimated "
              "configuration; the baselines use the same reference measurements.", "",
              "| model | threads: reference -> estimated | pairs | roofline p10 | roofline p50 | roofline p95 | baseline \"same latency\" p50 | baseline \"x FLOPs / threads\" p50 |",
              "|---|---|---|---|---|---|---|---|"]
    for model in models:
        mine = [r for r in rows if r["model"] == model]
        groups = [("all", mine)] + [(f"{a} -> {b}", [r for r in mine if (r["reference"]["threads"], r["estimated"]["threads"]) == (a, b)])
                                    for a, b in itertools.product(THREADS, repeat=2)]
        for label, group in groups:
            if group:
                lines.append(f"| {model} | {label} | {len(group)} | {mae([r['error_p10'] for r in group]):.0f}% | "
                             f"{mae([r['error_p50'] for r in group]):.0f}% | "
                             f"{mae([r['error_p95'] for r in group]):.0f}% | {mae([r['same_error_p50'] for r in group]):.0f}% | "
                             f"{mae([r['flops_error_p50'] for r in group]):.0f}% |")
    one = {m: mae([r["error_p10"] for r in rows if r["model"] == m and r["reference"]["threads"] == r["estimated"]["threads"] == 1])
           for m in models}
    speedup = [measured[(m, s, 1)]["p10"] / measured[(m, s, 2)]["p10"] for m in models for s in SEQS]
    lines += ["", "## Reading", "",
              f"- Along sequence length at one thread (1 -> 1) the roofline's scaling is off by {', '.join(f'{v:.0f}% ({m})' for m, v in one.items())} "
              "on average for the p10, the latency least disturbed by the other jobs. The p50 and p95 of this shared machine also "
              "carry those jobs' preemptions (a longer inference is cut by the scheduler more often), which no roofline models.",
              f"- Across thread counts the estimates miss by far more: the speed-up from a second thread was {min(speedup):.2f}x-{max(speedup):.2f}x "
              f"here (p10 at 1 thread / p10 at 2 threads, median {float(np.median(speedup)):.2f}x; below 1 means slower) because both cores "
              "were already busy with other work, while the roofline "
              "assumes the target's cores are free for the model. On a quiet multi-core host or board this part cannot be checked "
              "from here; treat an estimate for more threads than the measurement used as an optimistic bound.",
              "- So: an estimate is a planning number (which target is in budget by a wide margin, which is hopeless), "
              "not a substitute for `edgetune bench` on the device (the remote runner) or a board at hand.",
              "", "Every pair: `roofline.json`.", ""]
    (RESULTS / "roofline.md").write_text("\n".join(lines) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", default=[], metavar="NAME=PATH",
                        help="an ONNX model inside a bundle (tokenizer.json beside it); repeat for several "
                             "(with --reestimate: where a model recorded in roofline.json is now)")
    parser.add_argument("--texts", default=str(REPO / "edgetune" / "recipes" / "smart_home" / "test.csv"))
    parser.add_argument("--note", default="", help="what the models are, for the results file")
    parser.add_argument("--reestimate", action="store_true",
                        help="keep the measurements in roofline.json; recompute the estimates (after a change to "
                             "edgetune/roofline.py) and rewrite both files")
    parser.add_argument("--seconds", type=float, default=120.0, help="total measuring time (all configurations interleaved)")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    import onnxruntime

    from edgetune import roofline
    from edgetune.runtime import cpu_model_and_flags

    if args.reestimate:
        data = json.loads((RESULTS / "roofline.json").read_text())
        measured = {(m["model"], m["sequence_length"], m["threads"]): {k: m[k] for k in ("p10", "p50", "p95", "runs")}
                    for m in data["measured"]}
        # Recorded paths are relative to the repository root (or OUT_NAME/... for models outside it): --model
        # NAME=PATH says where such a model is now.
        models = {k: REPO / v for k, v in data["models"].items()}
        models |= {name: Path(path).resolve() for name, _, path in (spec.partition("=") for spec in args.model)}
        meta = data["meta"] | {"reestimated": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())} | ({"note": args.note} if args.note else {})
        write(models, measured, estimates(models, measured), meta)
        print((RESULTS / "roofline.md").read_text())
        return
    models = {}
    for spec in args.model:
        name, _, path = spec.partition("=")
        models[name] = Path(path).resolve()
    with open(args.texts, newline="", encoding="utf-8") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)]
    started, load_before = time.time(), os.getloadavg()[0]
    peaks = roofline.host_peaks(1)
    measured = measure_all(models, texts, args.seconds)
    rows = estimates(models, measured)
    meta = {"args": shown_args(sys.argv[1:]), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
            "minutes": (time.time() - started) / 60, "cpu": cpu_model_and_flags()[0], "arch": platform.machine(),
            "cores": os.cpu_count(), "onnxruntime": onnxruntime.__version__, "python": platform.python_version(),
            "load": [load_before, os.getloadavg()[0]], "load_during": [min(LOADS), float(np.median(LOADS)), max(LOADS)], "seconds": args.seconds,
            "note": args.note, "peaks": {"fp32": peaks.fp32, "int8": peaks.int8, "bandwidth": peaks.bandwidth, "source": peaks.source.replace(str(Path.home()), "~")}}
    write(models, measured, rows, meta)
    print((RESULTS / "roofline.md").read_text())


if __name__ == "__main__":
    main()
