"""What a student search costs and buys: a searched build against a single-student build, one cached teacher.

    OMP_NUM_THREADS=1 python benchmarks/search/run.py --out OUT [--data ../shared/data/banking77] [--target rpi5]
                                                      [--depths 2 3]

runs, into one OUT (one cache), timing each with its wall clock:
  1. `edgetune teacher`: the teacher both builds share (fine-tuned once, or reused from OUT's cache);
  2. `edgetune build` of the default recipe: one 2-layer int8-dynamic student (the single-student build);
  3. `edgetune build --set search=auto` (or `search={depths: [...]}` with --depths): depths 1, 2, 3 x every
     quantizing method; its 2-layer student is the one step 2 trained, reused from the cache, so its cold cost is its wall time plus that student's recorded
     build time (both are reported).
Then writes benchmarks/results/search.{md,json} and search_pareto.png: every candidate, the chosen one's test
accuracy against the default recipe's, and the times. A phase already recorded in OUT/search_benchmark.json is
not run again (rerun after an interruption to resume).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from edgetune import report_json

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results"
PHASES = {"teacher": ("teacher",), "single": ("build",), "search": ("build", "--set", "search=auto")}


def run_phase(name: str, out: Path, data: Path, target: str, state: dict, depths: list[int] | None) -> None:
    if name in state:
        print(f"{name}: recorded earlier ({state[name]['seconds']:.0f} s), not run again", flush=True)
        return
    command, *extra = PHASES[name]
    if name == "search" and depths:
        extra = ["--set", f"search={{depths: {depths}}}"]
    args = [sys.executable, "-m", "edgetune", command, "--target", target, "--data", str(data), "--out", str(out),
            *extra]
    print(f"{name}: {' '.join(args[1:])}", flush=True)
    started = time.perf_counter()
    subprocess.run(args, check=True)
    state[name] = {"seconds": round(time.perf_counter() - started, 1), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                   "command": " ".join(["edgetune", command, "--target", target, "--data", "DATA", "--out", "OUT",
                                        *extra])}
    if name != "teacher":  # both builds write OUT/<target>; keep each one's report
        shutil.copy(out / target / "report.json", out / f"{name}-report.json")
    if name == "search":
        shutil.copy(out / target / "search_pareto.png", out / "search_pareto.png")
    (out / "search_benchmark.json").write_text(json.dumps(state, indent=2))


def summary(out: Path, state: dict, data: Path, target: str) -> dict:
    single = report_json.read(out / "single-report.json")
    searched = report_json.read(out / "search-report.json")
    s = searched.search
    chosen = next(c for c in s.candidates if c.name == s.chosen)
    reused = [c for c in s.candidates if c.reused]
    reused_train = sum({tuple(c.layers): c.train_seconds for c in reused}.values())
    reused_quantize = sum(c.quantize_seconds for c in reused)
    return {
        "dataset": data.name, "target": target, "host": searched.host.cpu, "threads": "OMP_NUM_THREADS=1",
        "seconds": {name: state[name]["seconds"] for name in PHASES},
        "teacher_build_seconds": teacher_seconds(out),
        "commands": {name: state[name]["command"] for name in PHASES},
        "search_cold_seconds": round(state["search"]["seconds"] + reused_train + reused_quantize, 1),
        "reused_from_single": [c.name for c in reused],
        "default": {"name": f"the default recipe's {single.student.layers}-layer {single.quantization} student", "test_accuracy": single.accuracy,
                    "size_bytes": single.size_bytes, "estimate_p95_ms": (single.estimate or {}).get("p95_ms")},
        "chosen": {"name": chosen.name, "test_accuracy": chosen.test_accuracy,
                   "validation_accuracy": chosen.validation_accuracy, "size_bytes": chosen.size_bytes,
                   "estimate_p95_ms": chosen.p95_ms, "reason": s.reason},
        "latency_source": s.latency_source, "latency_note": s.latency_note,
        "candidates": [json.loads(json.dumps(c.__dict__)) for c in s.candidates],
        "test_examples": searched.test_examples,
    }


def teacher_seconds(out: Path) -> float:
    """The shared teacher's build time as its cache entry recorded it (the teacher phase may have found it cached)."""
    manifests = [json.loads(p.read_text()) for p in (out / "cache").glob("teacher-*/manifest.json")]
    return max(m["seconds"] for m in manifests)


def markdown(r: dict) -> str:
    sec, d, c = r["seconds"], r["default"], r["chosen"]
    lines = [
        f"# Student search: cost and gain ({r['dataset']}, target {r['target']})", "",
        f"One {r['host']} host, {r['threads']}, shared with other jobs (times move with the load). "
        f"p95 on {r['target']} is the roofline ESTIMATE (not measured): {r['latency_note']}", "",
        "| build | wall time |", "|---|---|",
        f"| teacher (`{r['commands']['teacher']}`), shared by both: its recorded build time | "
        f"{r['teacher_build_seconds']:.0f} s |",
        f"| single student, teacher cached (`{r['commands']['single']}`) | {sec['single']:.0f} s |",
        f"| searched, teacher and what the single build made cached (`{r['commands']['search']}`) | "
        f"{sec['search']:.0f} s |",
        f"| searched, cold cost (wall + recorded build time of what it reused: {', '.join(r['reused_from_single'])})"
        f" | {r['search_cold_seconds']:.0f} s |", "",
        f"The search cost {r['search_cold_seconds'] / sec['single']:.1f}x a single-student build "
        f"({len(r['candidates'])} candidates from {len({tuple(x['layers']) for x in r['candidates']})} students).",
        "",
        f"Chosen: **{c['name']}**, test accuracy **{c['test_accuracy']:.4f}** against "
        f"{d['name']} {d['test_accuracy']:.4f} ({(c['test_accuracy'] - d['test_accuracy']) * 100:+.2f} points; one "
        f"test text is {100 / r['test_examples']:.3f} points), {c['size_bytes'] / 1e6:.1f} MB vs "
        f"{d['size_bytes'] / 1e6:.1f} MB, p95 estimate {c['estimate_p95_ms']:.2f} ms. Why: {c['reason']}.", "",
        "| candidate | validation acc | test acc | size MB | p95 ms on target (ESTIMATE) | host p95 ms | budgets | "
        "train s | quantize s |", "|---|---|---|---|---|---|---|---|---|",
    ]
    for x in r["candidates"]:
        row = [x["name"], f"{x['validation_accuracy']:.4f}", f"{x['test_accuracy']:.4f}",
               f"{x['size_bytes'] / 1e6:.1f}", f"{x['p95_ms']:.2f}", f"{x['host_p95_ms']:.2f}",
               "ok" if x["within_budgets"] else "; ".join(x["over_budget"]),
               f"{x['train_seconds']:.0f}" + (" (reused)" if x["reused"] else ""), f"{x['quantize_seconds']:.0f}"]
        lines.append("| " + " | ".join(f"**{v}**" if x["name"] == c["name"] else v for v in row) + " |")
    lines += ["", "Train seconds are a depth's distill + tune + export, shared by its methods. They move with the "
              "other jobs on this shared host: compare depths' train seconds before reading the cost ratio.", "",
              "![student search](search_pareto.png)", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "banking77")
    parser.add_argument("--target", default="rpi5")
    parser.add_argument("--depths", type=int, nargs="+", help="student depths to search (default: search=auto's)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    state_file = args.out / "search_benchmark.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    for name in PHASES:
        run_phase(name, args.out, args.data, args.target, state, args.depths)
    result = summary(args.out, state, args.data, args.target)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "search.json").write_text(json.dumps(result, indent=2))
    (RESULTS / "search.md").write_text(markdown(result))
    shutil.copy(args.out / "search_pareto.png", RESULTS / "search_pareto.png")
    print(f"wrote {RESULTS / 'search.md'}")


if __name__ == "__main__":
    main()
