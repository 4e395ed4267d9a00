"""What a gate found: its checks, how it measured, and the exit code; the table a person reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgetune.gate.measure import Measurement
from edgetune.gate.verdict import Check


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


def _fmt(check: Check, x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.3f} ms" if check.unit == "ms" else f"{x:.4f}"


def table(result: GateResult):
    from rich.table import Table

    t = Table(title=f"edgetune gate: {result.target} ({result.mode})", title_justify="left")
    for column in ("check", "baseline", "candidate", "cand/base or Δ", "95% interval", "limit", "verdict"):
        t.add_column(column)
    colour = {"pass": "green", "REGRESSION": "bold red", "OVER BUDGET": "bold red", "inconclusive": "yellow",
              "info": "dim"}
    for c in result.checks:
        value = "-" if c.value is None else (f"{c.value:.3f}" if c.unit == "ms" else f"{c.value:+.4f}")
        interval = f"[{c.interval[0]:.3f}, {c.interval[1]:.3f}]" if c.interval else "-"
        t.add_row(c.name, _fmt(c, c.baseline), _fmt(c, c.candidate), value, interval, c.limit,
                  f"[{colour[c.verdict]}]{c.verdict}[/{colour[c.verdict]}]")
    return t


def print_result(result: GateResult, console) -> None:
    from edgetune.console import print_table

    print_table(table(result))
    console.print(result.how)
    for note in result.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    for c in result.checks:
        if c.failed or c.verdict == "inconclusive" or (c.verdict == "info" and c.name.startswith("budget")):
            style = "bold red" if c.failed else "yellow"
            console.print(f"[{style}]{c.message}[/{style}]")
    if result.regressions:
        console.print(f"[bold red]gate: FAIL[/bold red] ({len(result.regressions)} failed check"
                      f"{'s' if len(result.regressions) > 1 else ''}): {result.candidate} vs {result.baseline}")
    else:
        console.print(f"[bold green]gate: PASS[/bold green]: {result.candidate} vs {result.baseline}")
