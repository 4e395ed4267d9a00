"""Operating-system errors as one message: which path, what went wrong there, and the fix.

Two places turn them into the CLI's exit codes: `input_path` (a path the user gave, e.g. --out, is unusable: exit 2)
and `writing` (a stage failed writing its output: exit 1; its staging folder is removed, published folders stay as
they were); the CLI names any other one with its path (exit 2: it came from reading the user's inputs). Libraries that wrap the OS error in their own exception (safetensors' SafetensorError, onnxruntime's
Fail) are recognised by the errno or the system's message they quote.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from pathlib import Path

from edgetune.artifacts import STAGING_PREFIX
from edgetune.errors import BadInput, StageFailed

# errno -> (what happened, the fix); {path} is the path the error names, {option} the option that gave it.
KINDS: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("no space left on the device",
                   "free space on that disk (`df -h {path}` shows what is left) or pass {option} on another disk"),
    errno.EDQUOT: ("disk quota exceeded", "free space within your quota or pass {option} on another disk"),
    errno.EROFS: ("the filesystem is read-only", "pass {option} on a writable disk"),
    errno.EACCES: ("permission denied",
                   "make it writable for this user (`ls -ld {path}` shows its owner) or pass another {option}"),
    errno.EPERM: ("operation not permitted",
                  "make it writable for this user (`ls -ld {path}` shows its owner) or pass another {option}"),
    errno.ENOTDIR: ("a file stands where a folder is needed", "pass a folder for {option}, or move the file away"),
    errno.EEXIST: ("a file stands where a folder is needed", "pass a folder for {option}, or move the file away"),
    errno.EISDIR: ("a folder stands where a file is needed", "pass a file, or move the folder away"),
    errno.ENOENT: ("no such file or folder", "check the path"),
}
# How libraries that wrap an OS error quote its number: Rust's io::Error ("(os error 28)", "Os { code: 28, ...").
WRAPPED_ERRNO = re.compile(r"(?:os error|code:)\s*(\d+)")
WRAPPING_LIBRARIES = ("safetensors", "onnxruntime", "onnx")


class WriteFailed(StageFailed):
    """A stage could not write its output (disk full, read-only, permissions). Exit code 1."""


def as_oserror(err: BaseException) -> OSError | None:
    """`err` as an OSError: itself, one it was raised from, or one a library's wrapper quotes; None otherwise."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError):
            return err
        if _is_wrapper(err):
            text = str(err)
            number = WRAPPED_ERRNO.search(text)
            codes = [int(number.group(1))] if number else [c for c in KINDS if c != errno.ENOENT]
            for code in codes:
                if code in KINDS and (number or os.strerror(code) in text):
                    return OSError(code, os.strerror(code))
        err = err.__cause__  # only an explicit `raise ... from`: a bug raised while handling an OS error stays a bug
    return None


def _is_wrapper(err: BaseException) -> bool:
    """Exceptions libraries raise for a failed write: RuntimeError (torch, onnxruntime's Fail) and safetensors'."""
    return isinstance(err, RuntimeError) or type(err).__module__.split(".")[0] in WRAPPING_LIBRARIES


def describe(err: OSError, path: Path | str | None = None, option: str = "--out") -> str:
    """'PATH: what happened; the fix' for an OS error, naming the path the error names (or `path`)."""
    where = Path(err.filename) if err.filename else (Path(path) if path is not None else None)
    what, fix = explain(err, where, option)
    return f"{where}: {what}; {fix}" if where is not None else f"{what}; {fix}"


def explain(err: OSError, where: Path | None, option: str) -> tuple[str, str]:
    """(what happened, the fix) for an OS error on `where`."""
    code = err.errno
    blocking = _file_in_the_way(where) if code in (errno.ENOTDIR, errno.EEXIST) and where is not None else None
    what, fix = KINDS.get(code, (err.strerror or str(err), "check the path"))
    if blocking is not None:
        what = f"{blocking} is a file, not a folder"
    return what, fix.format(path=_existing(where) if where is not None else ".", option=option)


@contextlib.contextmanager
def input_path(path: Path, option: str):
    """OS errors on a path the user gave become BadInput (exit 2) naming the option, the path and the fix."""
    try:
        yield
    except OSError as err:
        what, fix = explain(err, Path(path), option)
        raise BadInput(f"{option} {path}: {what}; {fix}") from err


@contextlib.contextmanager
def writing(stage: str, final: Path):
    """OS errors (plain or wrapped) while a stage builds `final` become WriteFailed naming the path."""
    try:
        yield
    except (BadInput, StageFailed):
        raise  # already one message; their text may quote an OS error's without being one
    except Exception as err:
        found = as_oserror(err)
        if found is None:
            raise
        named = _published_name(found.filename, final)
        what, fix = explain(found, named, "--out")
        raise WriteFailed(f"{stage} failed writing {named}: {what}; {fix}. Its partial output was removed and "
                          "everything built before it is intact: rerun to resume") from err


def _published_name(filename, final: Path) -> Path:
    """The path as it will be once published: a file in `final`'s staging folder is named under `final`."""
    if not filename:
        return final
    path = Path(filename)
    try:
        parts = path.relative_to(final.parent).parts
    except ValueError:
        return path
    return final.joinpath(*parts[1:]) if parts and parts[0].startswith(STAGING_PREFIX) else path


def _existing(path: Path) -> Path:
    """`path` or its nearest parent that exists: what `df` and `ls` can be pointed at."""
    return next((p for p in (path, *path.parents) if p.exists()), path)


def _file_in_the_way(path: Path) -> Path | None:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate if not candidate.is_dir() else None
    return None
