"""The accuracy recipe built end to end, and what it ships against its own teacher.

    python benchmarks/distillation/accuracy_build.py --data ../shared/data/banking77 --out runs/accuracy

Runs `edgetune build --recipe accuracy` (cached stages are reused and say so; their first build's time is
reported), then scores the shipped bundle on the test split through its own runtime and compares it with the
MPNet teacher text by text: accuracy with a bootstrap interval over test texts, the student/teacher accuracy ratio
with its paired interval, p95 and size against the teacher's fp32 ONNX from the same bench run (timed interleaved).
Writes benchmarks/results/accuracy_build.{md,json}.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edgetune import pipeline, runtime
from edgetune.recipe import load_recipe
from edgetune.targets import load_target

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results"


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()


def stage_times(fingerprints: dict, out: Path, started: datetime) -> list[dict]:
    """Each stage's folder time, and whether this run built it or reused an earlier build."""
    rows = []
    for name, fingerprint in fingerprints.items():
        manifest_path = pipeline.cache_dir(out, name, fingerprint["key"]) / "manifest.json"
        if not manifest_path.exists():  # bench writes its folder outside the cache
            continue
        manifest = json.loads(manifest_path.read_text())
        created = datetime.strptime(manifest["created"], "%Y-%m-%dT%H:%M:%S%z")
        rows.append({"stage": name, "seconds": manifest["seconds"], "built_now": created >= started,
                     "metrics": manifest.get("metrics", {})})
    return rows


def paired_intervals(student: np.ndarray, teacher: np.ndarray, resamples: int = 10000) -> dict:
    """Accuracies and their ratio, each with a 95% bootstrap interval; texts are resampled once for both models."""
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(student), (resamples, len(student)))
    s, t = student[picks].mean(1), teacher[picks].mean(1)

    def interval(x):
        return [float(np.percentile(x, 2.5)), float(np.percentile(x, 97.5))]

    return {"student": float(student.mean()), "student_ci": interval(s),
            "teacher": float(teacher.mean()), "teacher_ci": interval(t),
            "ratio": float(student.mean() / teacher.mean()), "ratio_ci": interval(s / t)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with train.csv and test.csv")
    parser.add_argument("--out", type=Path, required=True, help="edgetune --out folder (its cache is reused)")
    parser.add_argument("--target", default="x86-avx512-vnni")
    args = parser.parse_args()
    data, out = args.data.resolve(), args.out.resolve()
    started = datetime.now(timezone.utc).replace(microsecond=0)
    clock = time.perf_counter()
    subprocess.run([sys.executable, "-m", "edgetune", "build", "--target", args.target, "--recipe", "accuracy",
                    "--data", str(data), "--out", str(out)], check=True)
    build_seconds = time.perf_counter() - clock
    report = json.loads((out / args.target / "report.json").read_text())
    bundle = out / args.target / "bundle"
    label_names = json.loads((bundle / "labels.json").read_text())
    rows = [r for r in csv.DictReader((data / "test.csv").open(encoding="utf-8-sig")) if r["text"].strip()]
    truth = np.array([label_names.index(r["label"].strip()) for r in rows])
    session = runtime.open_session(bundle / "model.onnx")
    shipped = runtime.logits([r["text"].strip() for r in rows], runtime.load_tokenizer(bundle), session).argmax(-1)
    fingerprints = pipeline.fingerprints(load_recipe("accuracy", data_dir=data), load_target(args.target))
    stages = stage_times(fingerprints, out, started)
    teacher_stage = next(s for s in stages if s["stage"] == "teacher")
    teacher_folder = pipeline.cache_dir(out, "teacher", fingerprints["teacher"]["key"])
    teacher_predicted = np.load(teacher_folder / "test_logits.npy").argmax(-1)
    accuracy = paired_intervals((shipped == truth).astype(float), (teacher_predicted == truth).astype(float))
    teacher_onnx = report["comparison"]["teacher_fp32"]
    result = {
        "commit": git("rev-parse", "--short", "HEAD"), "clean_checkout": git("status", "--porcelain") == "",
        "target": args.target, "host": report["host"], "note": report["note"], "test_texts": len(truth),
        "build_seconds": build_seconds, "stages": stages, "accuracy": accuracy,
        "report_accuracy": report["accuracy"],
        "p95_ms": {"student": report["latency_ms"]["p95"], "student_ci": report["latency_ms"]["p95_ci"],
                   "teacher_fp32": teacher_onnx["p95"], "teacher_fp32_ci": teacher_onnx["p95_ci"],
                   "speedup": report["speedup_vs_teacher_p95"]},
        "p50_ms": {"student": report["latency_ms"]["p50"], "teacher_fp32": teacher_onnx["p50"]},
        "size_bytes": {"student": report["size_bytes"], "teacher_fp32": teacher_onnx["size_bytes"]},
        "teacher": {"seconds": teacher_stage["seconds"], "built_now": teacher_stage["built_now"],
                    "metrics": teacher_stage["metrics"]},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "accuracy_build.json").write_text(json.dumps(result, indent=1))
    (RESULTS / "accuracy_build.md").write_text(render(result))
    print(render(result))


def render(r: dict) -> str:
    a, p95, size = r["accuracy"], r["p95_ms"], r["size_bytes"]
    speed = p95["speedup"]
    lines = [
        "# The accuracy recipe, built: shipped student against its MPNet teacher", "",
        f"`python benchmarks/distillation/accuracy_build.py --data DATA --out OUT` at commit {r['commit']} "
        f"({'clean checkout' if r['clean_checkout'] else 'with uncommitted changes'}), target {r['target']}, "
        f"{r['test_texts']} test texts. {r['note']}", "",
        "| | shipped int8 student | MPNet teacher | student / teacher |", "|---|---|---|---|",
        f"| accuracy (95% CI over test texts) | {a['student']:.4f} ({a['student_ci'][0]:.4f}–{a['student_ci'][1]:.4f}) | "
        f"{a['teacher']:.4f} ({a['teacher_ci'][0]:.4f}–{a['teacher_ci'][1]:.4f}) | "
        f"{100 * a['ratio']:.1f}% ({100 * a['ratio_ci'][0]:.1f}–{100 * a['ratio_ci'][1]:.1f}%) |",
        f"| p95 latency, batch 1, ms (teacher as fp32 ONNX, timed interleaved) | {p95['student']:.2f} "
        f"({p95['student_ci'][0]:.2f}–{p95['student_ci'][1]:.2f}) | {p95['teacher_fp32']:.1f} "
        f"({p95['teacher_fp32_ci'][0]:.1f}–{p95['teacher_fp32_ci'][1]:.1f}) | 1/{speed['ratio']:.1f} "
        f"(1/{speed['ci'][1]:.1f}–1/{speed['ci'][0]:.1f}) |",
        f"| p50 latency, ms | {r['p50_ms']['student']:.2f} | {r['p50_ms']['teacher_fp32']:.1f} | "
        f"1/{r['p50_ms']['teacher_fp32'] / r['p50_ms']['student']:.1f} |",
        f"| size, MB (teacher: fp32 ONNX) | {size['student'] / 1e6:.1f} | {size['teacher_fp32'] / 1e6:.1f} | "
        f"1/{size['teacher_fp32'] / size['student']:.1f} |", "",
        f"Build: {r['build_seconds']:.0f} s wall for this run. Stages (seconds of the build that made each folder; "
        "cached ones were reused by this run):", "",
        "| stage | seconds | this run |", "|---|---|---|",
    ]
    lines += [f"| {s['stage']} | {s['seconds']:.0f} | {'built' if s['built_now'] else 'cached'} |" for s in r["stages"]]
    t = r["teacher"]
    lines += ["", f"Teacher cost: {t['seconds']:.0f} s to fine-tune all-mpnet-base-v2 ({t['metrics'].get('best_epoch', 0):.0f} "
              f"epochs, max_length {t['metrics'].get('max_length', 0):.0f}) on this host's CPUs; test accuracy "
              f"{t['metrics'].get('test_accuracy', 0):.4f}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
