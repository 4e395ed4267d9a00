"""The two builds a gate compares: reading them, checking they can be compared, and what to replay."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from edgetune import artifacts, report_json
from edgetune.errors import BadInput
from edgetune.report_json import Report


class GateError(BadInput):
    """Bad input to the gate (missing file, unfinished build, builds that cannot be compared): exit 2."""


@dataclass
class Build:
    role: str  # baseline | candidate
    report_path: Path
    report: Report
    bundle: Path  # may not exist

    @property
    def on_host(self) -> bool:
        return (self.bundle / "model.onnx").is_file()

    def manifest(self) -> dict | None:
        try:
            return json.loads((self.bundle / "manifest.json").read_text())
        except (OSError, ValueError):
            return None


def load_build(arg: str | Path, role: str) -> Build:
    """A report.json or a build folder; every way it can be unusable is a GateError naming the path."""
    path = Path(arg)
    if path.is_dir():
        report_path = path / "report.json"
        if not report_path.is_file():
            finished = sorted(p.parent.name for p in path.glob("*/report.json"))
            if finished:
                hint = (f"it looks like an --out folder; pass one target's folder: "
                        f"{', '.join(str(path / t) for t in finished)}")
            elif (path / "bundle").is_dir() or path.name == "bundle":
                hint = "the build never finished (the bench stage writes report.json last); rebuild it"
            else:
                hint = "pass a build folder (--out DIR/<target>) or its report.json"
            raise GateError(f"{role} {path}: no report.json in this folder; {hint}")
    elif path.is_file():
        report_path = path
    else:
        raise GateError(f"{role} {path}: no such file or folder")
    try:
        report = report_json.read(report_path)
    except BadInput as err:
        raise GateError(f"{role} {err}") from None
    build = Build(role, report_path, report, report_path.parent / "bundle")
    check_intact(build)
    return build


def check_intact(build: Build) -> None:
    """A bundle on this host is measured only when its files are the ones its manifest records."""
    manifest = build.manifest()
    if not build.on_host or not manifest:
        return
    damage = artifacts.damage(build.bundle, manifest)
    if damage:
        raise GateError(f"{build.role} bundle {build.bundle} is damaged ({damage}); rebuild it: "
                        f"edgetune build --target {build.report.target}")


def check_comparable(base: Build, cand: Build) -> list[str]:
    """Refuse builds whose numbers mean different things; returns notes on what could not be checked."""
    b, c = base.report, cand.report
    if b.target != c.target:
        raise GateError(f"different targets: baseline {base.report_path} is {b.target}, candidate "
                        f"{cand.report_path} is {c.target}; gate builds of the same target")
    if b.test_examples != c.test_examples:
        raise GateError(f"different test sets: baseline was evaluated on {b.test_examples} test examples, "
                        f"candidate on {c.test_examples}; accuracy is only comparable on the same split")
    notes = []
    hb, hc = b.test_set_sha256, c.test_set_sha256
    if hb and hc and hb != hc:
        raise GateError(f"different test sets: test_set_sha256 {hb[:12]}… (baseline) vs {hc[:12]}… (candidate), "
                        f"both {b.test_examples} examples; accuracy is only comparable on the same split")
    if not (hb and hc):
        older = [x.role for x in (base, cand) if not x.report.test_set_sha256]
        notes.append(f"{' and '.join(older)} report{'s have' if len(older) > 1 else ' has'} no test_set_sha256 "
                     f"(built before edgetune recorded it): test sets compared by size only ({b.test_examples} "
                     "examples)")
    return notes


def replay_texts(cand: Build, inputs: Path | None) -> tuple[list[str] | None, str]:
    """The texts to replay and where they came from, or (None, why not)."""
    from edgetune.data import read_rows
    from edgetune.runtime import file_sha256

    if inputs is not None:
        if not Path(inputs).is_file():
            raise GateError(f"--inputs {inputs}: file not found")
        return [r["text"].strip() for r in read_rows(Path(inputs), ("text",))], f"{inputs} (--inputs)"
    manifest = cand.manifest() or {}
    data = manifest.get("material", {}).get("config", {}).get("data", {})
    test, column = data.get("test"), data.get("text_column", "text")
    if not test:
        return None, f"the candidate bundle's manifest ({cand.bundle / 'manifest.json'}) does not name its test split"
    if not Path(test).is_file():
        return None, f"the candidate's test split {test} is not on this host (pass --inputs CSV to replay one)"
    recorded = cand.report.test_set_sha256
    if recorded and file_sha256(Path(test)) != recorded:
        return None, f"the candidate's test split {test} changed since the build (sha256 differs from the report)"
    return [r[column].strip() for r in read_rows(Path(test), (column,))], f"candidate test split {test}"


def gate_threads(base: Build, cand: Build) -> int:
    """The candidate target's intra-op threads, capped at the CPUs this process may use (as the bench stage does)."""
    manifest = cand.manifest() or {}
    target = manifest.get("material", {}).get("target", {})
    wanted = target.get("threads") or target.get("cores") or cand.report.host.threads or 1
    from edgetune.runtime import usable_cpus

    return max(1, min(int(wanted), usable_cpus()))
