"""report.json for machines, report.md and PNG plots for people reading a pull request."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgetune import budgets, confidence, report_json
from edgetune.report_json import Budget, LatencyMs, ModelRow, Report
from edgetune.runtime import speed_verdict


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def latency_plot(timing: LatencyMs, path: Path, title: str) -> None:
    plt = _pyplot()
    s = np.sort(np.asarray(timing.samples))
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    ax.plot(s, np.arange(1, len(s) + 1) / len(s), lw=1.5)
    for q, color in (("p50", "tab:green"), ("p95", "tab:red")):
        ax.axvline(getattr(timing, q), color=color, ls="--", lw=1, label=f"{q} {getattr(timing, q):.2f} ms")
    lo, hi = timing.p95_ci
    ax.axvspan(lo, hi, color="tab:red", alpha=0.15, label="p95 95% CI")
    # The slowest few runs (scheduler hiccups) would squash the curve: clip the axis, say where the max is.
    ax.set_xlim(0, float(np.percentile(s, 99.5)) * 1.3)
    ax.set(xlabel=f"latency (ms); slowest run {s[-1]:.2f} ms", ylabel="fraction of runs", title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


MODEL_NAMES = {"teacher_fp32": "teacher fp32", "student_fp32": "student fp32", "shipped": "shipped"}


def tradeoff_plot(comparison: dict[str, ModelRow], path: Path, title: str) -> None:
    """Accuracy against p95 for teacher, fp32 student and shipped model; marker area is model size."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.8), dpi=110)
    largest = max(c.size_bytes for c in comparison.values())
    for name, c in comparison.items():
        ax.scatter(c.p95, c.accuracy, s=1500 * c.size_bytes / largest, alpha=0.5, label=MODEL_NAMES[name])
        ax.errorbar(c.p95, c.accuracy, xerr=[[c.p95 - c.p95_ci[0]], [c.p95_ci[1] - c.p95]], fmt="none", color="k", lw=1)
        ax.annotate(f"{MODEL_NAMES[name]}\n{c.size_bytes / 1e6:.0f} MB", (c.p95, c.accuracy), fontsize=7,
                    xytext=(8, -10), textcoords="offset points")
    ax.set(xlabel="p95 latency (ms), 95% CI", ylabel="test accuracy", title=title)
    ax.set_xlim(0, max(c.p95_ci[1] for c in comparison.values()) * 1.35)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def per_class_plot(shipped: dict, reference: dict, path: Path, title: str, worst: int = 12) -> None:
    """Per-class F1 of the shipped model beside the reference's, for the classes that dropped most."""
    plt = _pyplot()
    names = sorted(shipped, key=lambda k: shipped[k] - reference[k])[:worst]
    y = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(names) + 1.2), dpi=110)
    ax.barh(y - 0.2, [reference[k] for k in names], height=0.4, label="teacher fp32")
    ax.barh(y + 0.2, [shipped[k] for k in names], height=0.4, label="shipped")
    ax.set_yticks(y, names, fontsize=7)
    ax.invert_yaxis()
    ax.set(xlabel="F1", xlim=(0, 1.05), title=title)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.25 / max(1, len(names) / 6)), ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _budget_rows(report: Report) -> list[str]:
    """Each budget with the evidence it was judged on: a stand-in host's latency is never marked ok."""
    marks = {True: "✅ ", False: "❌ ", None: ""}
    rows = []
    for name, b in report.budgets.items():
        value = "-" if b.value is None else f"{b.value}"
        if b.evidence == budgets.ESTIMATE:
            value = f"≈ {b.value} (ESTIMATE)"
        host = "" if b.host_value is None else f"; this host measured {b.host_value}"
        mark = "" if b.evidence == budgets.ESTIMATE else marks[b.ok]
        rows.append(f"| {name} | {value} | {b.limit} | {b.evidence}{host} | {mark}{budgets.verdict(b)} |")
    return rows


def _estimate_lines(report: Report) -> list[str]:
    """The target's roofline estimate, labelled, beside this host's measurement."""
    e = report.estimate
    if not e or "p95_ms" not in e:
        return []
    at, lat = e.get("at", {}), report.latency_ms
    return [f"**ESTIMATE for {report.target}, not measured** (per-op roofline scaled by this host's measurement; "
            f"assumptions in report.json's `estimate`): p50 ≈ {e['p50_ms']:.2f} ms, **p95 ≈ {e['p95_ms']:.2f} ms** "
            f"at batch {at.get('batch_size')}, {at.get('sequence_length')} tokens, {at.get('threads')} threads; "
            f"this host ({report.host.cpu}) measured p50 {lat.p50:.2f} ms, p95 {lat.p95:.2f} ms.", ""]


def markdown(report: Report) -> str:
    lat, host, speedup = report.latency_ms, report.host, report.speedup_vs_teacher_p95
    lines = [
        f"# edgetune report: {report.target}",
        "",
        f"> {report.note}",
        "",
        f"Host: {host.cpu} ({host.arch}), {host.threads} threads, onnxruntime {host.onnxruntime}, "
        f"{host.execution_provider}.",
        "",
        "| model | layers | accuracy | macro-F1 | p95 ms (95% CI) | size |",
        "|---|---|---|---|---|---|",
        *[_model_row(name, c, report) for name, c in report.comparison.items()],
        "",
        f"The shipped model's p95 is {speedup.ratio:.1f}x faster than the fp32 teacher's "
        f"(95% CI {speedup.ci[0]:.1f}–{speedup.ci[1]:.1f}), all three measured interleaved in one run.",
        "",
        *_int4_lines(report),
        "![accuracy vs latency](tradeoff.png)",
        "",
        f"Latency measured on {host.cpu}{'' if report.measured_on_target else f', NOT on the {report.target}'} "
        f"(batch {lat.batch_size}, real test lengths {lat.sequence_length.min}–"
        f"{lat.sequence_length.max} tokens): p50 {lat.p50:.2f} ms, **p95 {lat.p95:.2f} ms** "
        f"(95% CI {lat.p95_ci[0]:.2f}–{lat.p95_ci[1]:.2f}), p99 {lat.p99:.2f} ms over {lat.runs} runs; "
        f"cold start {report.cold_start_ms:.0f} ms, peak RSS {report.peak_rss_mb:.0f} MB.",
        "",
        *_estimate_lines(report),
        "![latency CDF](latency.png)",
        "",
        "| budget | value | limit | evidence | verdict |",
        "|---|---|---|---|---|",
        *_budget_rows(report),
        "",
        "![per-class F1](per_class_f1.png)",
        "",
    ]
    if report.search:
        from edgetune.search_report import markdown_lines

        lines += markdown_lines(report.search)
    return "\n".join(lines + _per_class_drops(report) + confidence.markdown_lines(report.confidence))


def _per_class_drops(report: Report) -> list[str]:
    fp32, shipped = report.student_fp32.per_class_f1, report.per_class_f1
    drops = sorted(((fp32[k] - v, k) for k, v in shipped.items()), reverse=True)[:5]
    drops = [(d, k) for d, k in drops if d > 0]
    if not drops:
        return []
    return (["Largest per-class F1 drops from fp32 to the shipped model:", ""]
            + [f"- {k}: {shipped[k]:.3f} (fp32 {fp32[k]:.3f})" for d, k in drops] + [""])


def _int4_lines(report: Report) -> list[str]:
    c = report.int4_vs_int8_p95
    if not c:
        return []
    lo, hi = c.ci
    verdict = speed_verdict(lo, hi)
    speed = {"slower": "slower than", "faster": "faster than"}.get(verdict, "not clearly different from")
    smaller = report.size_bytes < c.int8_size_bytes
    why = ("int4 is chosen for size, not speed" if smaller and verdict == "slower" else
           "int4 is smaller" if smaller else "int4 is not smaller than int8 for this model: int8 is the better choice")
    return [f"int4 on this host: p95 {c.ratio:.2f}x that of int8 dynamic (95% CI {lo:.2f}–{hi:.2f}; int8 "
            f"{c.int8_p95:.2f} ms, accuracy {c.int8_accuracy:.4f}, {c.int8_size_bytes / 1e6:.1f} MB), so "
            f"{speed} int8 here; {why}.", ""]


def _model_row(name: str, c: ModelRow, report: Report) -> str:
    layers = report.teacher.layers if name == "teacher_fp32" else report.student.layers
    label = f"shipped: {report.quantization}" if name == "shipped" else MODEL_NAMES[name]
    row = (f"{label} | {layers} | {c.accuracy:.4f} | {c.macro_f1:.4f} | {c.p95:.2f} "
           f"({c.p95_ci[0]:.2f}–{c.p95_ci[1]:.2f}) | {c.size_bytes / 1e6:.1f} MB")
    return f"| **{row.replace(' | ', '** | **')}** |" if name == "shipped" else f"| {row} |"


def write_reports(report: Report, out_dir: Path) -> None:
    report_json.write(report, out_dir / "report.json")
    latency_plot(report.latency_ms, out_dir / "latency.png", f"{report.target}: latency CDF")
    tradeoff_plot(report.comparison, out_dir / "tradeoff.png", f"{report.target}: accuracy vs p95 (area: size)")
    per_class_plot(report.per_class_f1, report.teacher.per_class_f1, out_dir / "per_class_f1.png",
                   "per-class F1 where the shipped model dropped most")
    if report.search:
        from edgetune.search_report import PLOT, pareto_plot

        pareto_plot(report.search, out_dir / PLOT, f"{report.target}: student search (area: size)")
    (out_dir / "report.md").write_text(markdown(report))
