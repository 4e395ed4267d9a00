"""The edgetune command line: thin commands over pipeline.run; exit 0 built, 1 stage failed, 2 bad input."""

from __future__ import annotations

import contextlib
import functools
import sys
from pathlib import Path

import click
from rich.markup import escape

from edgetune import oserrors
from edgetune.console import console, print_table, stdout_console
from edgetune.errors import BadInput, StageFailed
from edgetune.pipeline import STAGE_NAMES, STAGES


@contextlib.contextmanager
def exit_codes(as_json: bool = False):
    """One clear message and the documented exit code for every way a command can fail (with --json, also as the
    JSON document on stdout)."""
    try:
        yield
    except BadInput as err:
        show_traceback()
        console.print(f"[bold red]error:[/bold red] {escape(str(err))}")
        fail(as_json, "bad input", str(err), 2)
    except StageFailed as err:
        show_traceback()
        console.print(f"[bold red]stage failed:[/bold red] {escape(str(err))}")
        fail(as_json, "stage failed", str(err), 1)
    except KeyboardInterrupt:
        console.print("[bold red]interrupted:[/bold red] the running stage was discarded; "
                      "stages finished before it stay cached. Rerun the same command to resume.")
        fail(as_json, "interrupted", "interrupted", 130)
    except Exception as err:
        os_error = oserrors.as_oserror(err)
        if os_error is None:
            raise
        # Stages report their own (WriteFailed, exit 1); one here came from reading the user's inputs.
        show_traceback()
        message = oserrors.describe(os_error)
        console.print(f"[bold red]error:[/bold red] {escape(message)}")
        fail(as_json, "bad input", message, 2)


def show_traceback() -> None:
    """With `edgetune --debug`, the traceback of the error being handled (else only its one-line message)."""
    context = click.get_current_context(silent=True)
    if context is not None and context.find_root().params.get("debug"):
        console.print_exception()


def fail(as_json: bool, kind: str, message: str, code: int):
    if as_json:
        from edgetune.json_output import emit, error

        emit(error(kind, message, code))
    sys.exit(code)


json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print the result as one JSON document on stdout (the log stays on stderr).")


def build_options(fn):
    @click.option("--target", "-t", required=True, help="Target name (see `edgetune targets`) or a path to a YAML profile.")
    @click.option("--recipe", "-r", type=click.Path(path_type=Path), help="Recipe YAML, or a packaged recipe: default (smart-home, fast) or accuracy (MPNet teacher).")
    @click.option("--data", type=click.Path(path_type=Path), help="Folder with train, test [, validation] .csv/.jsonl/.parquet files, or a Hugging Face datasets id.")
    @click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe key, e.g. quantize.method=int4.")
    @click.option("--out", type=click.Path(path_type=Path), default=Path("edgetune-out"), show_default=True, help="Output and cache folder.")
    @click.option("--force", type=click.Choice(STAGE_NAMES), help="Rebuild from this stage on, ignoring the cache.")
    @click.option("--remote", metavar="USER@HOST[:PORT]", help="Bench on this device over SSH (overrides the target's remote).")
    @click.option("--no-wait", is_flag=True, help="Exit 2 at once when another build is writing to --out (default: wait for it).")
    @json_option
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)

    return wrapper


def run_until(until: str, target, recipe, data, overrides, out, force, remote=None, measure=False, as_json=False,
              no_wait=False, fail_on_budget=False):
    from edgetune.api import run_stages

    with exit_codes(as_json):
        # With --json, stdout holds the one document: whatever a library prints while building goes to stderr.
        with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
            profile, outcomes = run_stages(until, target, recipe=recipe, data=data, overrides=overrides, out=out,
                                           force=force, remote=remote, measure=measure, wait=not no_wait)
            report_dir = out / profile.name if until == "bench" else None
            print_summary(outcomes, report_dir)
        if as_json:
            from edgetune.json_output import build_document, emit

            emit(build_document(outcomes, report_dir))
        if fail_on_budget:
            exit_on_budget_miss(out / profile.name / "report.json")


FAIL_ON_BUDGET = click.option("--fail-on-budget", is_flag=True,
                              help="Exit 1 when a budget judged on the target (measured there, or the labelled "
                                   "estimate) is missed; for CI.")


def exit_on_budget_miss(report_path: Path) -> None:
    from edgetune import budgets, report_json

    misses = budgets.misses(report_json.read(report_path))
    for miss in misses:
        console.print(f"[bold red]over budget:[/bold red] {escape(miss)}")
    if misses:
        sys.exit(1)


def print_summary(outcomes, report_dir: Path | None) -> None:
    from rich.table import Table

    table = Table(title="edgetune", title_justify="left")
    for column in ("stage", "status", "time", "key metric", "folder"):
        table.add_column(column)
    for o in outcomes:
        table.add_row(o.stage, o.status, f"{o.seconds:.1f} s" if o.seconds else "-", key_metric(o.metrics), str(o.folder))
    print_table(table)
    if report_dir and (report_dir / "report.json").exists():
        from edgetune import budgets, report_json

        report = report_json.read(report_dir / "report.json")
        lat = report.latency_ms
        console.print(f"[bold]{report.target}[/bold]: p95 {lat.p95:.2f} ms [{lat.p95_ci[0]:.2f}, {lat.p95_ci[1]:.2f}], "
                      f"accuracy {report.accuracy:.4f} (teacher {report.teacher.accuracy:.4f}), "
                      f"{report.size_bytes / 1e6:.1f} MB")
        note = escape(report.note)
        console.print(f"[yellow]{note}[/yellow]" if not report.measured_on_target else note)
        for name, b in report.budgets.items():
            colour = "yellow" if b.ok is None or b.evidence == budgets.ESTIMATE else "green" if b.ok else "red"
            console.print(f"  [{colour}]{escape(budgets.describe(name, b, report.target))}[/{colour}]")
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
@click.option("--debug", is_flag=True, help="Show the traceback behind an error message.")
def main(debug):
    """Distill, tune, export, quantize and benchmark a transformer classifier for an edge target."""


@main.command()
@build_options
@FAIL_ON_BUDGET
def build(target, recipe, data, overrides, out, force, remote, no_wait, as_json, fail_on_budget):
    """Run every stage for TARGET (cached, resumable) and write the bundle and report."""
    run_until("bench", target, recipe, data, overrides, out, force, remote, as_json=as_json, no_wait=no_wait,
              fail_on_budget=fail_on_budget)


def _stage_command(name: str, summary: str):
    def command(target, recipe, data, overrides, out, force, remote, no_wait, as_json, fail_on_budget=False):
        run_until(name, target, recipe, data, overrides, out, force, remote, measure=name == "bench", as_json=as_json,
                  no_wait=no_wait, fail_on_budget=fail_on_budget)

    command.__doc__ = f"Run the {name} stage ({summary}) and what it needs upstream."
    command = build_options(FAIL_ON_BUDGET(command) if name == "bench" else command)
    return main.command(name=name)(command)


for _stage in STAGES:
    _stage_command(_stage.name, _stage.summary)


@main.command()
@json_option
def targets(as_json):
    """List the known target profiles."""
    from rich.table import Table

    from edgetune.targets import known_targets, load_target

    with exit_codes(as_json):
        if as_json:
            from edgetune.json_output import emit, targets_document

            emit(targets_document(known_targets()))
            return
        table = Table()
        for column in ("target", "arch", "cores", "provider", "p95 budget", "hardware"):
            table.add_column(column)
        for name in known_targets():
            t = load_target(name)
            table.add_row(name, t.arch, str(t.cores), t.execution_provider,
                          f"{t.budgets.p95_ms} ms" if t.budgets.p95_ms else "-", t.description.split(":")[0])
        print_table(table, to_stdout=True)


@main.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("edgetune-out"), show_default=True)
@click.option("--target", "-t", help="Also show which stages a build for this target would reuse.")
@click.option("--recipe", "-r", type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(path_type=Path), help="With --target: the data a build would read, as build's --data.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE")
@json_option
def status(out, target, recipe, data, overrides, as_json):
    """Show what is built and cached under --out."""
    from rich.table import Table

    from edgetune import artifacts, pipeline, report_json
    from edgetune.json_output import built_entry, cache_entry, emit

    with exit_codes(as_json):
        document = {"out": str(out), "cache": [], "builds": [], "plan": None}
        table = Table(title=f"cache: {out / 'cache'}", title_justify="left")
        for column in ("stage", "key", "created", "build time", "key metric", "files"):
            table.add_column(column)
        entries = sorted(p for p in (out / "cache").glob("*-*") if p.is_dir()) if (out / "cache").is_dir() else []
        for folder in entries:
            manifest = artifacts.read_manifest(folder)
            if manifest:
                damage = artifacts.damage(folder, manifest)
                document["cache"].append(cache_entry(manifest, folder) | {"damaged": damage or None})
                table.add_row(manifest["stage"], manifest["key"][:16], manifest["created"], f"{manifest['seconds']:.1f} s",
                              key_metric(manifest["metrics"]),
                              f"[red]damaged: {escape(damage)}[/red]" if damage else "ok")
        lines = [table] if entries else [f"nothing cached under {out}"]
        for report_path in sorted(out.glob("*/report.json")):
            report = report_json.read(report_path)
            document["builds"].append(built_entry(report, report_path))
            lines.append(f"built {report.target}: p95 {report.latency_ms.p95:.2f} ms, accuracy "
                         f"{report.accuracy:.4f}, {report.size_bytes / 1e6:.1f} MB ({report_path.parent})")
        if target:
            from edgetune.recipe import load_recipe
            from edgetune.targets import load_target

            profile = load_target(target)
            prints = pipeline.fingerprints(load_recipe(recipe, overrides=tuple(overrides), data_dir=data), profile)
            document["plan"] = {"target": profile.name, "stages": {}}
            for s in STAGES[:-1]:
                folder = pipeline.cache_dir(out, s.name, prints[s.name]["key"])
                hit = artifacts.read_manifest(folder)
                damaged = hit and artifacts.damage(folder, hit)
                document["plan"]["stages"][s.name] = "cached" if hit and not damaged else "to build"
                lines.append(f"  {s.name:9s} {'cached' if hit and not damaged else 'to build'}"
                             + (f" (cache entry damaged: {damaged})" if damaged else ""))
        if as_json:
            emit(document)
            return
        for line in lines:
            print_table(line, to_stdout=True) if isinstance(line, Table) else stdout_console.print(escape(line))


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
              help="Intra-op threads for both bundles (default: the target's, capped at the CPUs this process may use).")
@click.option("--recorded", is_flag=True, help="Compare the reports' recorded latency instead of re-measuring.")
@FAIL_ON_BUDGET
@json_option
def gate(baseline, candidate, junit, max_slowdown, max_accuracy_drop, max_seconds, inputs, threads, recorded,
         fail_on_budget, as_json):
    """Fail CI when CANDIDATE is slower or less accurate than BASE (exit 0 pass, 1 regression, 2 error)."""
    from edgetune import gate as gating

    try:
        # No spinner: a rendering thread would take the GIL mid-measurement and show up in the tail latency.
        result = gating.run_gate(baseline, candidate, max_slowdown=max_slowdown, max_accuracy_drop=max_accuracy_drop,
                                 max_seconds=max_seconds, recorded=recorded, inputs=inputs,
                                 threads=threads, fail_on_budget=fail_on_budget)
    except (BadInput, OSError) as err:
        message = str(err) if isinstance(err, BadInput) else oserrors.describe(err)
        show_traceback()
        console.print(f"[bold red]error:[/bold red] {escape(message)}")
        if junit:
            gating.write_junit_error(message, junit)
        fail(as_json, "bad input", message, 2)
    except KeyboardInterrupt:
        console.print("[bold red]interrupted[/bold red]")
        fail(as_json, "interrupted", "interrupted", 130)
    gating.print_result(result, console)
    if junit:
        gating.write_junit(result, junit)
        console.print(f"JUnit XML: {junit}")
    if as_json:
        from edgetune.json_output import emit, gate_document

        emit(gate_document(result))
    sys.exit(result.exit_code)


@main.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.argument("texts", nargs=-1)
@click.option("--top-k", type=click.IntRange(min=1), default=3, show_default=True, help="Labels listed per text, best first.")
@click.option("--threads", type=click.IntRange(min=1), help="Intra-op threads (default: the bundle's preprocess.json).")
def predict(bundle, texts, top_k, threads):
    """Classify TEXTS (or each line of stdin) with BUNDLE (DIR/<target>/bundle or DIR/<target>); one JSON line a text.

    Runs the bundle's own torch-free path (its predict.py and edgetune_runtime.py code)."""
    from edgetune.predict_command import predict_lines

    with exit_codes():
        predict_lines(bundle, texts, top_k=top_k, threads=threads)


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
