"""One build at a time per output folder: an advisory lock on OUT/.lock, held while the stages run.

A second build into the same --out waits for the first and then reuses what it cached (or, with --no-wait, exits 2
at once). flock is released by the kernel when its holder exits in any way (SIGKILL, power loss of a container),
so a lock left by a dead process never blocks: the next build simply takes it over.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from edgetune.console import log
from edgetune.errors import BadInput
from edgetune.oserrors import input_path

LOCK = ".lock"


@contextlib.contextmanager
def locked(out: Path, *, wait: bool = True):
    """Hold OUT's lock for the duration; BadInput (exit 2) when --out is unusable or, with wait=False, taken."""
    out = Path(out)
    with input_path(out, "--out"):
        out.mkdir(parents=True, exist_ok=True)
        handle = open(out / LOCK, "a+")
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(out)
            if not wait:
                raise BadInput(f"--out {out}: another edgetune build{holder} is writing to this folder; "
                               "drop --no-wait to wait for it, or pass another --out") from None
            log(f"--out {out}: another edgetune build{holder} is writing to this folder; waiting for it to "
                "finish, then reusing what it cached (--no-wait exits instead)")
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")  # who holds it, for the message another build prints
        handle.flush()
        yield  # closing the handle releases the lock


def _holder(out: Path) -> str:
    try:
        pid = (out / LOCK).read_text().strip()
    except OSError:
        return ""
    return f" (process {pid})" if pid.isdigit() else ""
