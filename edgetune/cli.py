"""The edgetune command line: thin commands over pipeline.run; exit 0 built, 1 stage failed, 2 bad input."""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from pathlib import Path

import click

from edgetune.console import console
from edgetune.errors import BadInput, StageFailed
from edgetune.pipeline import STAGE_NAMES, STAGES


@contextlib.contextmanager
def exit_codes():
    """One clear message and the documented exit code for every way a command can fail."""
    try:
        yield
    except BadInput as err:
        console.print(f"[bold red]error:[/bold red] {err}")
        sys.exit(2)
    except StageFailed as err:
        console.print(f"[bold red]stage failed:[/bold red] {err}")
        sys.exit(1)
    except KeyboardInterrupt:
        console.print("[bold red]interrupted:[/bold red] the running stage was discarded; "
                      "stages finished before it stay cached. Rerun the same command to resume.")
        sys.exit(130)


def build_options(fn):
    @click.option("--target", "-t", required=True, help="Target name (see `edgetune targets`) or a path to a YAML profile.")
    @click.option("--recipe", "-r", type=click.Path(path_type=Path), help="Recipe YAML (default: the packaged smart-home recipe).")
    @click.option("--data", type=click.Path(path_type=Path), help="Folder with train.csv, test.csv [, validation.csv] (text,label).")
    @click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe key, e.g. quantize.method=int4.")
    @click.option("--out", type=click.Path(path_type=Path), default=Path("edgetune-out"), show_default=True, help="Output and cache folder.")
    @click.option("--force", type=click.Choice(STAGE_NAMES), help="Rebuild from this stage on, ignoring the cache.")
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)

    return wrapper


def run_until(until: str, target, recipe, data, overrides, out, force, measure=False):
    from edgetune import pipeline
    from edgetune.recipe import load_recipe
    from edgetune.targets import load_target

    with exit_codes():
        profile = load_target(target)
        loaded = load_recipe(recipe, overrides=tuple(overrides), data_dir=data)
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
        report = json.loads((report_dir / "report.json").read_text())
        lat = report["latency_ms"]
        console.print(f"[bold]{report['target']}[/bold]: p95 {lat['p95']:.2f} ms [{lat['p95_ci'][0]:.2f}, {lat['p95_ci'][1]:.2f}], "
                      f"accuracy {report['accuracy']:.4f} (teacher {report['teacher']['accuracy']:.4f}), "
                      f"{report['size_bytes'] / 1e6:.1f} MB")
        console.print(f"[yellow]{report['note']}[/yellow]" if not report["measured_on_target"] else report["note"])
        for name, b in report["budgets"].items():
            mark = "[green]ok[/green]" if b["ok"] else "[red]over budget[/red]"
            console.print(f"  budget {name}: {b['value']} (limit {b['limit']}) {mark}")
        console.print(f"bundle: {report_dir / 'bundle'}   report: {report_dir / 'report.md'}")


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
def build(target, recipe, data, overrides, out, force):
    """Run every stage for TARGET (cached, resumable) and write the bundle and report."""
    run_until("bench", target, recipe, data, overrides, out, force)


def _stage_command(name: str, summary: str):
    @build_options
    def command(target, recipe, data, overrides, out, force):
        run_until(name, target, recipe, data, overrides, out, force, measure=name == "bench")

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
        entries = sorted((out / "cache").glob("*-*")) if (out / "cache").is_dir() else []
        for folder in entries:
            manifest = artifacts.read_manifest(folder)
            if manifest:
                table.add_row(manifest["stage"], manifest["key"][:16], manifest["created"], f"{manifest['seconds']:.1f} s",
                              key_metric(manifest["metrics"]))
        console.print(table if entries else f"nothing cached under {out}")
        for report_path in sorted(out.glob("*/report.json")):
            report = json.loads(report_path.read_text())
            console.print(f"built {report['target']}: p95 {report['latency_ms']['p95']:.2f} ms, accuracy "
                          f"{report['accuracy']:.4f}, {report['size_bytes'] / 1e6:.1f} MB ({report_path.parent})")
        if target:
            from edgetune.recipe import load_recipe
            from edgetune.targets import load_target

            profile = load_target(target)
            prints = pipeline.fingerprints(load_recipe(recipe, overrides=tuple(overrides)), profile)
            for s in STAGES[:-1]:
                hit = artifacts.read_manifest(pipeline.cache_dir(out, s.name, prints[s.name]["key"]))
                console.print(f"  {s.name:9s} {'cached' if hit else 'to build'}")
