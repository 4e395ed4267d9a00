"""report.json for machines, report.md and PNG plots for people reading a pull request."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgetune.artifacts import write_json


def latency_plot(samples_ms, timing: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = np.sort(np.asarray(samples_ms))
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    ax.plot(s, np.arange(1, len(s) + 1) / len(s), lw=1.5)
    for q, color in (("p50", "tab:green"), ("p95", "tab:red")):
        ax.axvline(timing[q], color=color, ls="--", lw=1, label=f"{q} {timing[q]:.2f} ms")
    lo, hi = timing["p95_ci"]
    ax.axvspan(lo, hi, color="tab:red", alpha=0.15, label="p95 95% CI")
    # The slowest few runs (scheduler hiccups) would squash the curve: clip the axis, say where the max is.
    ax.set_xlim(0, float(np.percentile(s, 99.5)) * 1.3)
    ax.set(xlabel=f"latency (ms); slowest run {s[-1]:.2f} ms", ylabel="fraction of runs", title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _budget_rows(budgets: dict) -> list[str]:
    return [f"| {name} | {b['value']} | {b['limit']} | {'✅' if b['ok'] else '❌'} |" for name, b in budgets.items()]


def markdown(report: dict) -> str:
    lat = report["latency_ms"]
    teacher, fp32 = report["teacher"], report["student_fp32"]
    lines = [
        f"# edgetune report: {report['target']}",
        "",
        f"> {report['note']}",
        "",
        f"Host: {report['host']['cpu']} ({report['host']['arch']}), {report['host']['threads']} threads, "
        f"onnxruntime {report['host']['onnxruntime']}, {report['host']['execution_provider']}.",
        "",
        "| model | accuracy | macro-F1 | size |",
        "|---|---|---|---|",
        f"| teacher ({teacher['layers']} layers, PyTorch) | {teacher['accuracy']:.4f} | {teacher['macro_f1']:.4f} | |",
        f"| student fp32 ONNX ({report['student']['layers']} layers) | {fp32['accuracy']:.4f} | {fp32['macro_f1']:.4f} "
        f"| {fp32['size_bytes'] / 1e6:.1f} MB |",
        f"| **shipped: {report['quantization']}** | **{report['accuracy']:.4f}** | **{report['macro_f1']:.4f}** "
        f"| **{report['size_bytes'] / 1e6:.1f} MB** |",
        "",
        f"Latency (batch {lat['batch_size']}, real test lengths {lat['sequence_length']['min']}–"
        f"{lat['sequence_length']['max']} tokens): p50 {lat['p50']:.2f} ms, **p95 {lat['p95']:.2f} ms** "
        f"(95% CI {lat['p95_ci'][0]:.2f}–{lat['p95_ci'][1]:.2f}), p99 {lat['p99']:.2f} ms over {lat['runs']} runs; "
        f"cold start {report['cold_start_ms']:.0f} ms, peak RSS {report['peak_rss_mb']:.0f} MB.",
        "",
        "![latency CDF](latency.png)",
        "",
        "| budget | value | limit | ok |",
        "|---|---|---|---|",
        *_budget_rows(report["budgets"]),
        "",
    ]
    drops = sorted(((fp32["per_class_f1"][k] - v, k) for k, v in report["per_class_f1"].items()), reverse=True)[:5]
    drops = [(d, k) for d, k in drops if d > 0]
    if drops:
        lines += ["Largest per-class F1 drops from fp32 to the shipped model:", ""]
        lines += [f"- {k}: {report['per_class_f1'][k]:.3f} (fp32 {fp32['per_class_f1'][k]:.3f})" for d, k in drops]
        lines.append("")
    return "\n".join(lines)


def write_reports(report: dict, out_dir: Path, samples_ms) -> None:
    write_json(out_dir / "report.json", report)
    latency_plot(samples_ms, report["latency_ms"], out_dir / "latency.png", f"{report['target']}: latency CDF")
    (out_dir / "report.md").write_text(markdown(report))
