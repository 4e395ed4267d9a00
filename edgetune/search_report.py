"""The search's part of report.md: every candidate in a table and on an accuracy / p95 / size Pareto plot."""

from __future__ import annotations

from pathlib import Path

from edgetune.report_json import Search, SearchCandidate

PLOT = "search_pareto.png"


def pareto(rows: list[SearchCandidate]) -> set[str]:
    """Names of the candidates no other beats on test accuracy, p95 on the target and size at once."""
    def p95(r):
        return r.p95_ms if r.p95_ms is not None else r.host_p95_ms

    def dominates(a, b):
        at_least = a.test_accuracy >= b.test_accuracy and p95(a) <= p95(b) and a.size_bytes <= b.size_bytes
        return at_least and (a.test_accuracy, -p95(a), -a.size_bytes) != (b.test_accuracy, -p95(b), -b.size_bytes)

    return {r.name for r in rows if not any(dominates(o, r) for o in rows if o is not r)}


def markdown_lines(search: Search) -> list[str]:
    front = pareto(search.candidates)
    estimate = search.latency_source == "estimate"
    p95_head = "p95 ms on target (ESTIMATE)" if estimate else f"p95 ms on target ({search.latency_source})"
    lines = ["## Student search", "", f"> {search.latency_note}", "",
             f"Shipped: **{search.chosen}**: {search.reason}.", "",
             f"| candidate | validation acc | test acc | size MB | {p95_head} | host p95 ms | budgets | Pareto | "
             "train s | quantize s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in search.candidates:
        p95 = "-" if r.p95_ms is None else f"{r.p95_ms:.2f}"
        cells = [r.name, f"{r.validation_accuracy:.4f}", f"{r.test_accuracy:.4f}", f"{r.size_bytes / 1e6:.1f}", p95,
                 f"{r.host_p95_ms:.2f}", "ok" if r.within_budgets else "; ".join(r.over_budget),
                 "yes" if r.name in front else "", f"{r.train_seconds:.0f}" + (" (cached)" if r.reused else ""),
                 f"{r.quantize_seconds:.0f}"]
        row = " | ".join(cells)
        lines.append(f"| **{row.replace(' | ', '** | **')}** |" if r.name == search.chosen else f"| {row} |")
    lines += ["", f"Train seconds are a depth's distill + tune + export, shared by its methods; the searched build "
              f"took {search.seconds:.0f} s wall time.", "", f"![student search]({PLOT})", ""]
    return lines


def pareto_plot(search: Search, path: Path, title: str) -> None:
    """Test accuracy against p95 on the target; marker area is size; the Pareto front joined; the shipped one starred."""
    from edgetune.report import _pyplot

    plt = _pyplot()
    rows = search.candidates
    p95 = {r.name: r.p95_ms if r.p95_ms is not None else r.host_p95_ms for r in rows}
    largest = max(r.size_bytes for r in rows)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    methods = sorted({r.method for r in rows})
    colors = dict(zip(methods, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for method in methods:
        mine = [r for r in rows if r.method == method]
        ax.scatter([p95[r.name] for r in mine], [r.test_accuracy for r in mine], alpha=0.55, color=colors[method],
                   s=[30 + 600 * r.size_bytes / largest for r in mine], label=method)
    for r in rows:
        ax.annotate(f"{len(r.layers)}L {r.size_bytes / 1e6:.1f} MB", (p95[r.name], r.test_accuracy), fontsize=7,
                    xytext=(6, -9), textcoords="offset points")
    front, best = [], float("-inf")  # the accuracy / p95 front: each step right buys accuracy (the table adds size)
    for r in sorted(rows, key=lambda r: (p95[r.name], -r.test_accuracy)):
        if r.test_accuracy > best:
            front.append(r)
            best = r.test_accuracy
    ax.plot([p95[r.name] for r in front], [r.test_accuracy for r in front], "k--", lw=0.8,
            label="Pareto front (accuracy, p95)")
    chosen = next(r for r in rows if r.name == search.chosen)
    ax.scatter([p95[chosen.name]], [chosen.test_accuracy], marker="*", s=260, color="gold", edgecolor="k",
               zorder=5, label=f"shipped: {chosen.name}")
    right = max(p95.values()) * 1.3
    budget = search.budgets.get("p95_ms")
    if budget is not None and budget <= 3 * right:  # a budget far right of every candidate would squash them
        ax.axvline(budget, color="tab:red", lw=1, ls=":", label=f"p95 budget {budget:g} ms")
        right = max(right, budget * 1.05)
    kind = {"estimate": "ESTIMATE (roofline)", "device": "measured on the device", "host": "measured here"}
    off_chart = f"; budget {budget:g} ms, off the chart" if budget is not None and budget * 1.05 > right else ""
    ax.set(xlabel=f"p95 on the target, ms ({kind.get(search.latency_source, 'this host')}{off_chart})",
           ylabel="test accuracy", title=title, xlim=(0, right))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), markerscale=0.6)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
