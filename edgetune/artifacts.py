"""Artifact folders: hashing, manifest.json (written last), verifying a folder against it, and atomic publish."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import time
from pathlib import Path

from edgetune.errors import BadInput
from edgetune.runtime import file_sha256

MANIFEST = "manifest.json"
STAGING_PREFIX = ".tmp-"
RESUME_PREFIX = ".resume-"  # a stage's training checkpoints (edgetune/checkpoints.py), kept until it is published


def require_bundle(bundle: Path, target_name: str, texts: list[str], use: str) -> Path:
    """What running a bundle anywhere needs: its model.onnx, and texts to feed it. BadInput otherwise."""
    bundle = Path(bundle)
    if not (bundle / "model.onnx").is_file():
        raise BadInput(f"{bundle}: no bundle (model.onnx missing); build it first: edgetune build --target {target_name}")
    manifest = read_manifest(bundle)
    damaged = manifest and damage(bundle, manifest)
    if damaged:
        raise BadInput(f"{bundle}: the bundle is damaged ({damaged}); rebuild it: edgetune build --target {target_name}")
    if not texts:
        raise BadInput(f"{use} needs at least one text to run the bundle on")
    return bundle


def folder_hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): file_sha256(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def folder_sizes(folder: Path) -> dict[str, int]:
    return {
        str(p.relative_to(folder)): p.stat().st_size
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def write_manifest(folder: Path, manifest: dict) -> None:
    """`manifest` with the sha256 and size of every file in `folder`, as folder/manifest.json (write it last: its
    presence marks the folder complete, and `damage` checks the files against it)."""
    manifest["files"] = folder_hashes(folder)
    manifest["sizes"] = folder_sizes(folder)
    write_json(folder / MANIFEST, manifest)


def damage(folder: Path, manifest: dict) -> str | None:
    """What differs between `folder` and the files its manifest records, or None when every file matches.

    Sizes first (a truncated or partly copied file is caught without reading it), then sha256. Manifests written
    before sizes were recorded are checked by hash alone."""
    hashes, sizes = manifest.get("files") or {}, manifest.get("sizes") or {}
    for name in hashes:
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if name in sizes and path.stat().st_size != sizes[name]:
            return f"{name} is {path.stat().st_size} bytes, the manifest records {sizes[name]}"
    for name, digest in hashes.items():
        if file_sha256(folder / name) != digest:
            return f"{name} differs from the sha256 the manifest records"
    return None


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def write_json(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)


def read_manifest(folder: Path) -> dict | None:
    """The manifest of a complete artifact, or None (missing or unreadable means not built)."""
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def staging(final: Path):
    """Yield a temp folder beside `final`; the caller publishes it. Removed if anything goes wrong."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / _staging_name(final.name)
    tmp.mkdir()
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish(tmp: Path, final: Path) -> None:
    """Replace `final` by `tmp` with renames, so readers see the old folder or the new one, never half.

    Another process may publish the same folder meanwhile (same cache key: same content); then its folder is kept
    and `tmp` discarded, instead of failing on a rename onto a folder that is not empty."""
    old = None
    if final.exists():
        old = final.parent / _staging_name("old-" + final.name)
        try:
            os.rename(final, old)
        except FileNotFoundError:  # the other process moved it away first
            old = None
    try:
        os.rename(tmp, final)
    except OSError as err:
        if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):  # a non-empty folder took the name meanwhile
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(final.parent / f"{RESUME_PREFIX}{final.name}", ignore_errors=True)


def resume_dir(staging: Path) -> Path | None:
    """The checkpoint folder of the stage being built in `staging` (None outside a staging folder)."""
    parts = staging.name[len(STAGING_PREFIX):].split("-", 2) if staging.name.startswith(STAGING_PREFIX) else []
    return staging.parent / f"{RESUME_PREFIX}{parts[2]}" if len(parts) == 3 else None


def remove_stale_staging(root: Path) -> None:
    """Temp folders left by a process that was killed (SIGKILL, power loss) are never valid entries."""
    if not root.is_dir():
        return
    for tmp in root.rglob(f"{STAGING_PREFIX}*"):
        pid = tmp.name[len(STAGING_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _staging_name(name: str) -> str:
    return f"{STAGING_PREFIX}{os.getpid()}-{time.time_ns()}-{name}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
