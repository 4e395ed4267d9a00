"""The student that fits the target: train a few candidate students, ship the most accurate within the budgets.

A recipe with a `search:` section (`search: auto`, or `search: {depths: [1, 2, 3], methods: [...]}`) makes
`edgetune build` train one student per depth and quantize it with each method. Every candidate goes through the
ordinary stages (pipeline.run), so the teacher and its logits are built once and shared, a depth's student is shared
by all its methods, and candidates an earlier build already made come from the cache: a search costs its students.
Each candidate is scored on validation (to choose) and test (to report), weighed, and timed for the target
(edgetune.search_measure). The most accurate one within the target's size and p95 budgets then ships through the
ordinary bench, whose report gains a `search` section; when none fits, the build fails naming the closest.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from edgetune import pipeline
from edgetune.artifacts import read_manifest
from edgetune.console import console, log
from edgetune.errors import BadInput, StageFailed
from edgetune.recipe import Recipe
from edgetune.report_json import Search, SearchCandidate
from edgetune.targets import Target


@dataclass(frozen=True)
class Candidate:
    """One student to try: the teacher layers it keeps and the quantization method it ships with."""
    layers: tuple[int, ...]
    method: str

    @property
    def name(self) -> str:
        return f"{len(self.layers)}L {list(self.layers)} {self.method}"


@dataclass
class Trained:
    """A candidate's quantize folder and what its stages cost (seconds as first built, even when reused now)."""
    candidate: Candidate
    quantize_dir: Path
    train_seconds: float  # distill + tune + export of its depth (shared by the depth's methods)
    quantize_seconds: float
    reused: bool  # every stage came from the cache


def methods(recipe: Recipe) -> tuple[str, ...]:
    from edgetune import quantizers

    listed = recipe.search.methods
    return listed if listed else tuple(n for n in quantizers.names() if quantizers.get(n).changes_graph)


def check_search(recipe: Recipe) -> None:
    """The search section's values, named with their fix (called by the recipe's own checks)."""
    from edgetune import quantizers

    src, s = recipe.source, recipe.search
    if not s.depths or any(d < 1 for d in s.depths) or len(set(s.depths)) != len(s.depths):
        raise BadInput(f"{src}: search.depths {list(s.depths)} must list distinct student depths >= 1, e.g. [1, 2, 3]")
    if s.methods is not None:
        unknown = [m for m in s.methods if m not in quantizers.names()]
        if not s.methods or unknown or len(set(s.methods)) != len(s.methods):
            raise BadInput(f"{src}: search.methods {list(s.methods)} must list distinct registered methods "
                           f"({', '.join(quantizers.names())}), or be null for every method that quantizes")
    if recipe.distill.student is not None:
        raise BadInput(f"{src}: search cuts students from the teacher's layers, but distill.student is "
                       f"{recipe.distill.student!r}; set distill.student: null, or drop the search section")


def layers_for(depth: int, teacher_layers: int, recipe_layers: tuple[int, ...], source: str) -> tuple[int, ...]:
    """Teacher layers for a student of `depth`: the recipe's own when it has that depth (so the plain build's
    student is a candidate and shares its cache), else spread evenly from the first layer to the last."""
    if depth > teacher_layers:
        raise BadInput(f"{source}: search.depths has {depth}, but the teacher has {teacher_layers} layers; "
                       f"list depths up to {teacher_layers}")
    if depth == len(recipe_layers):
        return tuple(recipe_layers)
    if depth == 1:
        return (0,)
    return tuple(round(i * (teacher_layers - 1) / (depth - 1)) for i in range(depth))


def candidate_recipe(recipe: Recipe, candidate: Candidate) -> Recipe:
    distill = recipe.distill
    if candidate.layers != distill.layers:  # a hand-made hidden-state map fits only the recipe's own student
        distill = dataclasses.replace(distill, layers=candidate.layers, hidden_layer_map=None)
    return dataclasses.replace(recipe, distill=distill,
                               quantize=dataclasses.replace(recipe.quantize, method=candidate.method))


class Forcing:
    """`--force STAGE` over many pipeline runs: each stage entry the force reaches is rebuilt once, not once a run."""

    def __init__(self, force: str | None):
        self.force, self.done = force, set()

    def run(self, recipe: Recipe, target: Target, out_root: Path, until: str) -> list[pipeline.Outcome]:
        prints = pipeline.fingerprints(recipe, target)
        wanted = [n for n in pipeline.descendants(self.force) if n in pipeline.ancestors(until)] if self.force else []
        first = next((n for n in wanted if prints[n]["key"] not in self.done), None)
        outcomes = pipeline.run(recipe, target, out_root, until=until, force=first)
        self.done.update(prints[n]["key"] for n in wanted)
        return outcomes


def train(recipe: Recipe, target: Target, out_root: Path, forcing: Forcing) -> list[Trained]:
    """Every candidate through distill, tune, export and quantize; the teacher is built (or reused) once."""
    teacher = forcing.run(recipe, target, out_root, "teacher")[-1]
    depth_of = int(teacher.metrics["layers"])
    trained = []
    for depth in recipe.search.depths:
        layers = layers_for(depth, depth_of, recipe.distill.layers, recipe.source)
        for method in methods(recipe):
            candidate = Candidate(layers, method)
            log(f"search: candidate {candidate.name}")
            outcomes = {o.stage: o for o in forcing.run(candidate_recipe(recipe, candidate), target, out_root,
                                                       "quantize")}
            seconds = {name: read_manifest(o.folder)["seconds"] for name, o in outcomes.items()}
            trained.append(Trained(candidate, outcomes["quantize"].folder,
                                   sum(seconds[n] for n in ("distill", "tune", "export")), seconds["quantize"],
                                   all(o.status == "cached" for o in outcomes.values())))
    return trained


def over_budget(row: SearchCandidate, target: Target) -> list[str]:
    b, over = target.budgets, []
    if b.size_mb is not None and row.size_bytes / 1e6 > b.size_mb:
        over.append(f"size {row.size_bytes / 1e6:.1f} MB > {b.size_mb:g} MB")
    if b.p95_ms is not None and row.p95_ms is not None and row.p95_ms > b.p95_ms:
        over.append(f"p95 {row.p95_ms:.2f} ms > {b.p95_ms:g} ms")
    return over


def excess(row: SearchCandidate, target: Target) -> float:
    """How far over its worst budget a candidate is (1.3: 30% over); what `closest` means."""
    b, ratios = target.budgets, [0.0]
    if b.size_mb is not None:
        ratios.append(row.size_bytes / 1e6 / b.size_mb)
    if b.p95_ms is not None and row.p95_ms is not None:
        ratios.append(row.p95_ms / b.p95_ms)
    return max(ratios)


def choose(rows: list[SearchCandidate], target: Target, source: str) -> tuple[SearchCandidate, str]:
    """The most accurate candidate on validation within the budgets (ties: faster, then smaller), and why."""
    fits = [r for r in rows if r.within_budgets]
    if not fits:
        closest = min(rows, key=lambda r: excess(r, target))
        raise StageFailed(
            f"no candidate meets {target.name}'s budgets ({budget_words(target)}; p95 by {source}): the closest is "
            f"{closest.name} ({'; '.join(closest.over_budget)}; validation accuracy "
            f"{closest.validation_accuracy:.4f}). Relax the budgets in {target.source or 'the target profile'}, or "
            "search smaller students (search.depths) or other methods (search.methods)")
    best = max(fits, key=lambda r: (r.validation_accuracy, -(r.p95_ms or 0.0), -r.size_bytes))
    reason = (f"most accurate on validation ({best.validation_accuracy:.4f}) of the {len(fits)} of {len(rows)} "
              f"candidates within {target.name}'s budgets ({budget_words(target)}; p95 by {source})")
    better = [r for r in rows if r.validation_accuracy > best.validation_accuracy]
    if better:
        top = max(better, key=lambda r: r.validation_accuracy)
        reason += (f"; {top.name} scored higher ({top.validation_accuracy:.4f}) but is over budget "
                   f"({'; '.join(top.over_budget)})")
    return best, reason


def budget_words(target: Target) -> str:
    b = target.budgets
    words = ([f"p95 <= {b.p95_ms:g} ms"] if b.p95_ms is not None else []) + \
            ([f"size <= {b.size_mb:g} MB"] if b.size_mb is not None else [])
    return ", ".join(words) or "no size or p95 budget"


def run(recipe: Recipe, target: Target, out_root: Path, *, force: str | None = None) -> list[pipeline.Outcome]:
    """The searched build: candidates, measurement, choice; then the chosen one's ordinary bench and report."""
    from edgetune import report_json
    from edgetune.report import write_reports
    from edgetune.search_measure import measure

    started, forcing = time.perf_counter(), Forcing(force)
    pipeline.preflight(recipe, target)
    trained = train(recipe, target, Path(out_root), forcing)
    console.rule("[bold]search[/bold]: score, weigh and time every candidate for the target")
    rows, source, note = measure(trained, recipe, target)
    for row in rows:
        row.over_budget = over_budget(row, target)
        row.within_budgets = not row.over_budget
    print_table(rows, source)
    chosen, reason = choose(rows, target, source)
    log(f"search: shipping {chosen.name}: {reason}")
    winner = next(t.candidate for t in trained if t.candidate.name == chosen.name)
    outcomes = forcing.run(candidate_recipe(recipe, winner), target, Path(out_root), "bench")
    folder = Path(out_root) / target.name
    report = report_json.read(folder / "report.json")
    report.search = Search(chosen=chosen.name, reason=reason, latency_source=source, latency_note=note,
                           budgets={k: v for k, v in dataclasses.asdict(target.budgets).items() if v is not None},
                           candidates=rows, seconds=round(time.perf_counter() - started, 1))
    write_reports(report, folder)
    return outcomes


def print_table(rows: list[SearchCandidate], source: str) -> None:
    from rich.table import Table

    table = Table(title=f"search candidates (p95 on the target by {source})", title_justify="left")
    for column in ("candidate", "val acc", "test acc", "size MB", "p95 ms", "host p95 ms", "budgets"):
        table.add_column(column)
    for r in rows:
        p95 = "-" if r.p95_ms is None else f"{r.p95_ms:.2f}"
        table.add_row(r.name, f"{r.validation_accuracy:.4f}", f"{r.test_accuracy:.4f}", f"{r.size_bytes / 1e6:.1f}",
                      p95, f"{r.host_p95_ms:.2f}", "ok" if r.within_budgets else "; ".join(r.over_budget))
    console.print(table)
