"""The edgetune command line: thin commands over pipeline.run; exit 0 built, 1 stage failed, 2 bad input."""

from __future__ import annotations

import contextlib
import functools
import sys
from pathlib import Path

import click
from rich.markup import escape

from edgetune.console import console
from edgetune.errors import BadInput, StageFailed
from edgetune.pipeline import STAGE_NAMES, STAGES


@contextlib.contextmanager
def exit_codes():
    """One clear message and the documented exit code for every way a command can fail."""
    try:
        yield
    except BadInput as err:
        console.print(f"[bold red]error:[/bold red] {escape(str(err))}")
        sys.exit(2)
    except StageFailed as err:
        console.print(f"[bold red]stage failed:[/bold red] {escape(str(err))}")
        sys.exit(1)
    except KeyboardInterrupt:
        console.print("[bold red]interrupted:[/bold red] the running stage was discarded; "
                      "stages finished before it stay cached. Rerun the same command to resume.")
        sys.exit(130)


def build_options(fn):
    @click.option("--target", "-t", required=True, help="Target name (see `edgetune targets`) or a path to a YAML profile.")
    @click.option("--recipe", "-r", type=click.Path(path_type=Path), help="Recipe YAML, or a packaged recipe: default (smart-home, fast) or accuracy (MPNet teacher).")
    @click.option("--data", type=click.Path(path_type=Path), help="Folder with train.csv, test.csv [, validation.csv] (text,label).")
    @click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe key, e.g. quantize.method=int4.")
    @click.option("--out", type=click.Path(path_type=Path), default=Path("edgetune-out"), show_default=True, help="Output and cache folder.")
    @click.option("--force", type=click.Choice(STAGE_NAMES), help="Rebuild from this stage on, ignoring the cache.")
    @click.option("--remote", metavar="USER@HOST[:PORT]", help="Bench on this device over SSH (overrides the target's remote).")
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)

    return wrapper


def run_until(until: str, target, recipe, data, overrides, out, force, remote=None, measure=False):
    import dataclasses

    from edgetune import pipeline
    from edgetune.recipe import load_recipe
    from edgetune.targets import load_target

    with exit_codes():
        profile = load_target(target)
        if remote:
            from edgetune.remote import parse_remote

            profile = dataclasses.replace(profile, remote=parse_remote(remote, profile.remote))
        loaded = load_recipe(recipe, overrides=tuple(overrides), data_dir=data)
        if loaded.search is not None and until == "bench" and not measure:  # `build` with a search section
            from edgetune import search

            outcomes = search.run(loaded, profile, out, force=force)
        else:
            outcomes = pipeline.run(loaded, profile, out, until=until, force=force, measure=measure)
        print_summary(outcomes, out / profile.name if until == "bench" else None)


def print_summary(outcomes, report_dir: Path | None) -> None:
    from rich.table import Table

    table = Table(title="edgetune", title_justify="left")
    for column in ("stage", "status", "time", "key metric", "folder"):
        table.add_column(column)
    for o in outcomes:
        table.add_row(o.stage, o.status, f"{o.seconds:.1f} s" if o.seconds else "-", key_metric(o.metrics), str(o.folder))
    console.print(table)
    if report_dir and (report_dir / "report.json").exists():
        from edgetune import report_json

        report = report_json.read(report_dir / "report.json")
        lat = report.latency_ms
        console.print(f"[bold]{report.target}[/bold]: p95 {lat.p95:.2f} ms [{lat.p95_ci[0]:.2f}, {lat.p95_ci[1]:.2f}], "
                      f"accuracy {report.accuracy:.4f} (teacher {report.teacher.accuracy:.4f}), "
                      f"{report.size_bytes / 1e6:.1f} MB")
        note = escape(report.note)
        console.print(f"[yellow]{note}[/yellow]" if not report.measured_on_target else note)
        for name, b in report.budgets.items():
            mark = "[green]ok[/green]" if b.ok else "[red]over budget[/red]"
            console.print(f"  budget {name}: {b.value} (limit {b.limit}) {mark}")
        console.print(escape(f"bundle: {report_dir / 'bundle'}   report: {report_dir / 'report.md'}"))


def key_metric(metrics: dict) -> str:
    if "p95_ms" in metrics:
        return f"p95 {metrics['p95_ms']:.2f} ms, accuracy {metrics['accuracy']:.4f}"
    if "test_accuracy" in metrics:
        return f"test accuracy {metrics['test_accuracy']:.4f}"
    if "max_abs_diff" in metrics:
        return f"max |onnx - torch| {metrics['max_abs_diff']:.1e}"
    if "size_bytes" in metrics:
        return f"{metrics['size_bytes'] / 1e6:.1f} MB"
    return ""


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edgetune")
def main():
    """Distill, tune, export, quantize and benchmark a transformer classifier for an edge target."""


@main.command()
@build_options
def build(target, recipe, data, overrides, out, force, remote):
    """Run every stage for TARGET (cached, resumable) and write the bundle and report."""
    run_until("bench", target, recipe, data, overrides, out, force, remote)


def _stage_command(name: str, summary: str):
    @build_options
    def command(target, recipe, data, overrides, out, force, remote):
        run_until(name, target, recipe, data, overrides, out, force, remote, measure=name == "bench")

    command.__doc__ = f"Run the {name} stage ({summary}) and what it needs upstream."
    return main.command(name=name)(command)


for _stage in STAGES:
    _stage_command(_stage.name, _stage.summary)


@main.command()
def targets():
    """List the known target profiles."""
    from rich.table import Table

    from edgetune.targets import known_targets, load_target

    with exit_codes():
        table = Table()
        for column in ("target", "arch", "cores", "provider", "p95 budget", "hardware"):
            table.add_column(column)
        for name in known_targets():
            t = load_target(name)
            table.add_row(name, t.arch, str(t.cores), t.execution_provider,
                          f"{t.budgets.p95_ms} ms" if t.budgets.p95_ms else "-", t.description.split(":")[0])
        console.print(table)


@main.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("edgetune-out"), show_default=True)
@click.option("--target", "-t", help="Also show which stages a build for this target would reuse.")
@click.option("--recipe", "-r", type=click.Path(path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE")
def status(out, target, recipe, overrides):
    """Show what is built and cached under --out."""
    from rich.table import Table

    from edgetune import artifacts, pipeline

    with exit_codes():
        table = Table(title=f"cache: {out / 'cache'}", title_justify="left")
        for column in ("stage", "key", "created", "build time", "key metric"):
            table.add_column(column)
        entries = sorted(p for p in (out / "cache").glob("*-*") if p.is_dir()) if (out / "cache").is_dir() else []
        for folder in entries:
            manifest = artifacts.read_manifest(folder)
            if manifest:
                table.add_row(manifest["stage"], manifest["key"][:16], manifest["created"], f"{manifest['seconds']:.1f} s",
                              key_metric(manifest["metrics"]))
        console.print(table if entries else f"nothing cached under {out}")
        for report_path in sorted(out.glob("*/report.json")):
            from edgetune import report_json

            report = report_json.read(report_path)
            console.print(f"built {report.target}: p95 {report.latency_ms.p95:.2f} ms, accuracy "
                          f"{report.accuracy:.4f}, {report.size_bytes / 1e6:.1f} MB ({report_path.parent})")
        if target:
            from edgetune.recipe import load_recipe
            from edgetune.targets import load_target

            profile = load_target(target)
            prints = pipeline.fingerprints(load_recipe(recipe, overrides=tuple(overrides)), profile)
            for s in STAGES[:-1]:
                hit = artifacts.read_manifest(pipeline.cache_dir(out, s.name, prints[s.name]["key"]))
                console.print(f"  {s.name:9s} {'cached' if hit else 'to build'}")


@main.command()
@click.option("--baseline", "-b", required=True, metavar="BASE",
              help="The build to compare against: a report.json or a build folder (DIR/<target>).")
@click.argument("candidate", metavar="CANDIDATE")
@click.option("--junit", type=click.Path(path_type=Path), help="Also write a JUnit XML file (one testcase per check).")
@click.option("--max-slowdown", type=click.FloatRange(min=0), default=0.05, show_default=True,
              help="Fail when the p95 or median latency ratio's 95% interval lies wholly above 1 + this.")
@click.option("--max-accuracy-drop", type=click.FloatRange(min=0), default=0.005, show_default=True,
              help="Fail when candidate accuracy < baseline accuracy - this.")
@click.option("--max-seconds", type=click.FloatRange(min=0.5), default=None,
              help="Cap in seconds on re-measuring [default: 12]; past half of it only an undecided gate whose "
                   "ratio is estimated above the limit goes on.")
@click.option("--inputs", type=click.Path(path_type=Path),
              help="CSV with a text column to replay (default: the candidate's test split, named in its bundle).")
@click.option("--threads", type=click.IntRange(min=1),
              help="Intra-op threads for both bundles (default: the target's, capped at this host's cores).")
@click.option("--recorded", is_flag=True, help="Compare the reports' recorded latency instead of re-measuring.")
def gate(baseline, candidate, junit, max_slowdown, max_accuracy_drop, max_seconds, inputs, threads, recorded):
    """Fail CI when CANDIDATE is slower or less accurate than BASE (exit 0 pass, 1 regression, 2 error)."""
    from edgetune import gate as gating

    try:
        # No spinner: a rendering thread would take the GIL mid-measurement and show up in the tail latency.
        result = gating.run_gate(baseline, candidate, max_slowdown=max_slowdown, max_accuracy_drop=max_accuracy_drop,
                                 max_seconds=max_seconds, recorded=recorded, inputs=inputs,
                                 threads=threads)
    except BadInput as err:
        console.print(f"[bold red]error:[/bold red] {escape(str(err))}")
        if junit:
            gating.write_junit_error(str(err), junit)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("[bold red]interrupted[/bold red]")
        sys.exit(130)
    gating.print_result(result, console)
    if junit:
        gating.write_junit(result, junit)
        console.print(f"JUnit XML: {junit}")
    sys.exit(result.exit_code)


@main.command()
@click.option("--target", "-t", required=True, help="An aarch64 target (e.g. rpi5, jetson-orin) or a path to its profile.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("edgetune-out"), show_default=True,
              help="Build folder: verifies OUT/<target>/bundle, writes OUT/<target>/verify.json.")
@click.option("--recipe", "-r", type=click.Path(path_type=Path), help="Take the test split from this recipe (as build does).")
@click.option("--data", type=click.Path(path_type=Path), help="Take the test split from DIR/test.csv.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Recipe override, as for build.")
@click.option("--inputs", type=click.Path(path_type=Path), help="CSV with a text (and optional label) column to run instead.")
@click.option("--min-agreement", type=click.FloatRange(0, 1), default=0.99, show_default=True,
              help="Exit 1 when fewer predictions than this agree between this host and the emulated target.")
def verify(target, out, recipe, data, overrides, inputs, min_agreement):
    """Run the bundle under aarch64 emulation of TARGET's CPU and compare with this host (correctness only, no timing).

    Default texts: the test split named in the bundle's manifest. Needs root, qemu-user-static and mmdebstrap."""
    from edgetune.emulation import run_verify

    with exit_codes():
        run_verify(target, out, recipe=recipe, data=data, overrides=tuple(overrides), inputs=inputs,
                   min_agreement=min_agreement)
