"""JUnit XML for CI: one testcase per check, or one error when the gate could not run."""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

from edgetune.gate.result import GateResult


def _suite(name: str, tests: int, failures: int, errors: int, seconds: float) -> tuple[ET.Element, ET.Element]:
    suites = ET.Element("testsuites", name="edgetune gate", tests=str(tests), failures=str(failures),
                        errors=str(errors), time=f"{seconds:.3f}")
    suite = ET.SubElement(suites, "testsuite", name=name, tests=str(tests), failures=str(failures),
                          errors=str(errors), skipped="0", time=f"{seconds:.3f}",
                          timestamp=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
                          hostname=socket.gethostname())
    return suites, suite


def _write(tree_root: ET.Element, path: Path) -> None:
    ET.indent(tree_root)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(tree_root).write(path, encoding="utf-8", xml_declaration=True)


def write_junit(result: GateResult, path: Path) -> None:
    """One testcase per check; <failure> for a regression; numbers also as properties, for scripts."""
    suites, suite = _suite(f"edgetune gate: {result.target}", len(result.checks), len(result.regressions), 0,
                           result.seconds)
    props = ET.SubElement(suite, "properties")
    measured = {"mode": result.mode, "baseline": str(result.baseline), "candidate": str(result.candidate),
                "how": result.how}
    if result.measurement:
        m = result.measurement
        measured |= {"runs_per_bundle": str(len(m.base_ms)), "measure_seconds": f"{m.seconds:.3f}",
                     "session_pairs": str(m.epochs),
                     "block": str(m.block), "threads": str(m.threads), "stopped_because": m.stopped_because}
    for c in result.checks:
        key = c.name.replace(" ", "_").replace("-", "_").lower()
        measured[f"{key}.baseline"] = repr(c.baseline)
        measured[f"{key}.candidate"] = repr(c.candidate)
        if c.value is not None:
            measured[f"{key}.value"] = repr(c.value)
        if c.interval:
            measured[f"{key}.interval"] = f"{c.interval[0]!r},{c.interval[1]!r}"
        measured[f"{key}.verdict"] = c.verdict
    for k, v in measured.items():
        ET.SubElement(props, "property", name=k, value=v)
    for c in result.checks:
        case = ET.SubElement(suite, "testcase", classname=f"edgetune.gate.{result.target}", name=c.name,
                             time=f"{c.seconds:.3f}")
        if c.failed:
            kind = "over-budget" if c.verdict == "OVER BUDGET" else "regression"
            failure = ET.SubElement(case, "failure", message=c.message, type=kind)
            failure.text = f"{c.message}\n{result.how}\n"
        else:
            ET.SubElement(case, "system-out").text = c.message
    if result.notes:
        ET.SubElement(suite, "system-out").text = "\n".join(result.notes)
    _write(suites, path)


def write_junit_error(message: str, path: Path) -> None:
    """The gate could not run (exit 2): one testcase with an <error>, so CI shows why instead of nothing."""
    suites, suite = _suite("edgetune gate", 1, 0, 1, 0.0)
    case = ET.SubElement(suite, "testcase", classname="edgetune.gate", name="gate inputs", time="0")
    ET.SubElement(case, "error", message=message, type="gate-error").text = message
    _write(suites, path)
