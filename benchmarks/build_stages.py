"""The cache folders a finished build was made from, read from its manifests (one definition for the scripts in
benchmarks/, which put the repository root on sys.path to import it)."""

from __future__ import annotations

import json
from pathlib import Path

from edgetune.pipeline import cache_dir

STAGES = ("teacher", "distill", "tune", "export", "quantize", "baseline")


def stage_folders(out: Path, target: str) -> dict[str, Path]:
    """{stage: folder} of the build whose bundle is OUT/TARGET/bundle, "bench" being the bundle itself. The bundle's
    manifest names bench's upstream stages; tune (and distill) also come through the export stage's manifest."""
    bundle = Path(out) / target / "bundle"
    keys = dict(_manifest(bundle)["material"]["upstream"])
    keys = {**_manifest(cache_dir(Path(out), "export", keys["export"]))["material"]["upstream"], **keys}
    return {stage: cache_dir(Path(out), stage, keys[stage]) for stage in STAGES} | {"bench": bundle}


def stage_manifests(out: Path, target: str) -> dict[str, dict]:
    """{stage: manifest} of the same folders: metrics, seconds and the material each was built from."""
    return {stage: _manifest(folder) for stage, folder in stage_folders(out, target).items()}


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())
