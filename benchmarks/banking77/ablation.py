"""Banking77 ablation: what each training stage buys, from two real builds.

    python benchmarks/banking77/ablation.py --out runs/b77 [--data ../shared/data/banking77]

runs (or reuses, through the cache) two builds of the default recipe on Banking77 for x86-avx2 in OUT:
`edgetune build --target x86-avx2 --data DATA` as is (distilled student, then LoRA) and with
distill.alpha=0 (the same student trained on hard labels only), then writes benchmarks/results/banking77.{md,json}. Accuracy and macro-F1 are on the
3080-text test split; p95s come from each build's bench, where teacher, fp32 student and shipped model
are timed interleaved in one run (hard-label, distilled and distilled + LoRA students share one
architecture, LoRA being merged, so every 2-layer row takes its p95 from the distilled build's run). Distilled
and hard-label students are also compared paired, text by text, with a bootstrap interval on the difference.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from edgetune import report_json
from edgetune.metrics import paired_difference

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # for benchmarks.build_stages
from benchmarks.build_stages import stage_folders, stage_manifests  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "banking77"
RESULTS = REPO / "benchmarks" / "results"


def build(out: Path, data: Path, *overrides: str) -> dict:
    """Build into `out` (both builds share its cache, so the teacher trains once) and read the results."""
    args = [sys.executable, "-m", "edgetune", "build", "--target", "x86-avx2", "--data", str(data), "--out", str(out)]
    for o in overrides:
        args += ["--set", o]
    subprocess.run(args, check=True)
    report = report_json.read(out / "x86-avx2" / "report.json").to_json()  # checked against the one definition
    trained = ("teacher", "distill", "tune", "export", "quantize")  # the stages whose times the table reports
    folders = {s: f for s, f in stage_folders(out, "x86-avx2").items() if s in trained}
    manifests = {s: m for s, m in stage_manifests(out, "x86-avx2").items() if s in trained}
    return {"report": report, "manifests": manifests, "folders": folders}


def test_correct(export_dir: Path, data: Path, max_length: int) -> np.ndarray:
    """1 where the export's fp32 ONNX model classifies a test text right, else 0 (the bundle's tokenizer path)."""
    from edgetune import runtime

    with open(data / "test.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    labels = json.loads((export_dir / "labels.json").read_text())
    tokenizer = runtime.load_tokenizer(export_dir, runtime.preprocess_settings(export_dir, max_length))
    session = runtime.open_session(export_dir / "model.onnx")
    predicted = runtime.logits([r["text"] for r in rows], tokenizer, session, 64).argmax(-1)
    return (predicted == np.array([labels.index(r["label"]) for r in rows])).astype(float)


def row(name: str, metrics: dict, p95: float, p95_ci, layers: int) -> dict:
    return {"model": name, "layers": layers, "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
            "p95_ms": p95, "p95_ci": p95_ci}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/b77"))
    parser.add_argument("--data", type=Path, default=DATA, help="the Banking77 folder (train.csv, test.csv)")
    args = parser.parse_args()
    distilled = build(args.out, args.data)
    hard = build(args.out, args.data, "distill.alpha=0")
    report = distilled["report"]
    comp, hard_comp = report["comparison"], hard["report"]["comparison"]
    test = lambda m: {"accuracy": m["metrics"]["test_accuracy"], "macro_f1": m["metrics"]["test_macro_f1"]}  # noqa: E731
    layers = report["student"]["layers"]
    kd = distilled["manifests"]["distill"]["material"]["config"]["distill"]
    # The length the build ran at (data.max_length may be `auto`): the distill stage records what it resolved to.
    max_length = int(distilled["manifests"]["distill"]["metrics"]["max_length"])
    gain = paired_difference(test_correct(distilled["folders"]["export"], args.data, max_length),
                       test_correct(hard["folders"]["export"], args.data, max_length))
    # The four 2-layer rows share one graph (LoRA is merged), so each p95 is the distilled build's, where the
    # fp32 student, the shipped int8 model and the teacher were timed interleaved in one run.
    fp32, int8 = comp["student_fp32"], comp["shipped"]
    rows = [
        row("teacher all-MiniLM-L6-v2, fine-tuned (fp32 ONNX)", comp["teacher_fp32"], comp["teacher_fp32"]["p95"],
            comp["teacher_fp32"]["p95_ci"], report["teacher"]["layers"]),
        row("student, hard labels only (distill.alpha=0)", test(hard["manifests"]["distill"]), fp32["p95"],
            fp32["p95_ci"], layers),
        row(f"student, distilled (KL T={kd['temperature']:g}, alpha {kd['alpha']:g} + CE)",
            test(distilled["manifests"]["distill"]), fp32["p95"], fp32["p95_ci"], layers),
        row("student, distilled + LoRA (fp32 ONNX)", fp32, fp32["p95"], fp32["p95_ci"], layers),
        row(f"shipped: distilled + LoRA, {report['quantization']}", int8, int8["p95"], int8["p95_ci"], layers),
        row(f"hard-label student + LoRA, {hard['report']['quantization']}", hard_comp["shipped"], int8["p95"],
            int8["p95_ci"], layers),
    ]
    host = report["host"]
    seconds = {s: m["seconds"] for s, m in distilled["manifests"].items()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "banking77.json").write_text(json.dumps({"host": host, "rows": rows, "stage_seconds": seconds,
                                                         "speedup_vs_teacher_p95": report["speedup_vs_teacher_p95"],
                                                         "distilled_minus_hard_label_fp32": gain}, indent=2))
    teacher_acc = comp["teacher_fp32"]["accuracy"]
    lines = [
        "# Banking77: what each stage buys",
        "",
        f"`python benchmarks/banking77/ablation.py` on {host['cpu']} ({host['arch']}, {host['cores']} cores, "
        f"{host['threads']} threads, onnxruntime {host['onnxruntime']}), CPU only. Test split: 3080 texts, 77 intents.",
        "",
        "| model | layers | accuracy | macro-F1 | % of teacher | p95 ms (95% CI) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {r['layers']} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} | "
                     f"{100 * r['accuracy'] / teacher_acc:.1f}% | {r['p95_ms']:.2f} ({r['p95_ci'][0]:.2f}–{r['p95_ci'][1]:.2f}) |")
    s = report["speedup_vs_teacher_p95"]
    lines += ["", f"Distilled minus hard-label student (both + LoRA, fp32 ONNX), paired on the same test texts: "
              f"{100 * gain['gain']:+.2f} points (95% bootstrap CI {100 * gain['ci'][0]:+.2f} to {100 * gain['ci'][1]:+.2f}); "
              f"{gain['only_a_right']} texts only the distilled student gets right, {gain['only_b_right']} only the "
              "hard-label one."]
    lines += ["", f"Shipped p95 vs the fp32 teacher's, same run: {s['ratio']:.1f}x faster (95% CI {s['ci'][0]:.1f}–{s['ci'][1]:.1f}).",
              "", "Stage wall times of the distilled build (s): " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()), ""]
    (RESULTS / "banking77.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
