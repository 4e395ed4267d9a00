"""The Python API, for notebooks and other tools: the pipeline the CLI runs, returning the typed report.

    import edgetune
    report = edgetune.build("rpi5", data="my_data", overrides={"quantize.method": "int4"})
    report.accuracy, report.latency_ms.p95, report.budgets

Bad input raises edgetune.errors.BadInput and a failed stage StageFailed (the CLI's exit codes 2 and 1), with the
same messages; progress is logged to stderr as the CLI does.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path


def _override_strings(overrides) -> tuple[str, ...]:
    """`--set` strings from a {dotted.key: value} mapping (values as JSON, which the recipe parses as YAML)."""
    if isinstance(overrides, dict):
        return tuple(f"{key}={json.dumps(value)}" for key, value in overrides.items())
    return tuple(overrides or ())


def run_stages(until: str, target, *, recipe=None, data=None, overrides=(), out="edgetune-out", force=None,
               remote=None, measure=False, wait=True):
    """(target profile, stage outcomes): `until` and the stages it reads from, cached where possible."""
    from edgetune import pipeline
    from edgetune.recipe import load_recipe
    from edgetune.targets import load_target

    profile = load_target(str(target))
    if remote:
        from edgetune.remote import parse_remote

        profile = dataclasses.replace(profile, remote=parse_remote(remote, profile.remote))
    loaded = load_recipe(Path(recipe) if recipe else None, overrides=_override_strings(overrides),
                         data_dir=Path(data) if data else None)
    if loaded.search is not None and until == "bench" and not measure:  # a build with a search section
        from edgetune import search

        return profile, search.run(loaded, profile, Path(out), force=force)
    return profile, pipeline.run(loaded, profile, Path(out), until=until, force=force, measure=measure, wait=wait)


def build(target: str, *, recipe: str | Path | None = None, data: str | Path | None = None,
          overrides: dict | tuple = (), out: str | Path = "edgetune-out", force: str | None = None,
          remote: str | None = None):
    """Build the bundle for `target` (a name from `edgetune targets` or a profile path) and return its
    edgetune.report_json.Report, which `out/<target>/report.json` holds.

    recipe: a recipe YAML or a packaged recipe name (default: the smart-home recipe); data: a folder replacing the
    recipe's data (as --data); overrides: {"dotted.key": value} or ("key=value", ...) (as --set); force: a stage to
    rebuild from; remote: "user@host[:port]" to bench on a device over SSH.
    """
    from edgetune import report_json

    profile, _ = run_stages("bench", target, recipe=recipe, data=data, overrides=overrides, out=out, force=force,
                            remote=remote)
    return report_json.read(Path(out) / profile.name / "report.json")
