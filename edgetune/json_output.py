"""`--json`: each command's result as one JSON document on stdout; everything a person reads stays on stderr.

One function a command, each building plain dicts from what the command already computed (the typed report, the
gate's result, the manifests), so the JSON and the human output cannot disagree.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path


def emit(document: dict) -> None:
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
    sys.stdout.flush()


def error(kind: str, message: str, exit_code: int) -> dict:
    return {"ok": False, "error": kind, "message": message, "exit_code": exit_code}


def build_document(outcomes, report_dir: Path | None) -> dict:
    """What build, bench and the stage commands did: each stage's outcome, and the report when one was written."""
    from edgetune import report_json

    report_path = report_dir / "report.json" if report_dir else None
    report = report_json.read(report_path).to_json() if report_path and report_path.exists() else None
    return {"ok": True, "exit_code": 0,
            "stages": [{"stage": o.stage, "status": o.status, "seconds": round(o.seconds, 2), "folder": str(o.folder),
                        "metrics": o.metrics} for o in outcomes],
            "bundle": str(report_dir / "bundle") if report else None,
            "report_path": str(report_path) if report else None, "report": report}


def targets_document(names: list[str]) -> dict:
    from edgetune.targets import load_target

    targets = []
    for name in names:
        profile = dataclasses.asdict(load_target(name))
        targets.append({"name": name, **{k: v for k, v in profile.items() if k != "name"}})
    return {"targets": targets}


def cache_entry(manifest: dict, folder: Path) -> dict:
    return {"stage": manifest["stage"], "key": manifest["key"], "created": manifest["created"],
            "seconds": manifest["seconds"], "metrics": manifest["metrics"], "folder": str(folder)}


def built_entry(report, path: Path) -> dict:
    return {"target": report.target, "p95_ms": report.latency_ms.p95, "p95_ci": report.latency_ms.p95_ci,
            "accuracy": report.accuracy, "macro_f1": report.macro_f1, "size_bytes": report.size_bytes,
            "report_path": str(path), "bundle": str(path.parent / "bundle")}


def gate_document(result) -> dict:
    checks = [dataclasses.asdict(c) | {"failed": c.failed} for c in result.checks]
    measurement = dataclasses.asdict(result.measurement) if result.measurement else None
    return {"ok": result.exit_code == 0, "exit_code": result.exit_code, "target": result.target,
            "baseline": str(result.baseline), "candidate": str(result.candidate), "mode": result.mode,
            "how": result.how, "notes": result.notes, "seconds": result.seconds,
            "regressions": [c.name for c in result.regressions], "checks": checks, "measurement": measurement}
