"""One build at a time per --out: a second build waits for the first and reuses its cache, or exits 2 (--no-wait)."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from edgetune import report_json
from edgetune.outdir import LOCK
from helpers import build, cache_entries, entries_of, plain, stage_statuses, staging_leftovers

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock and POSIX signals")


def start_build(recipe, out, log, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "edgetune", "build", "--target", "rpi5", "--recipe", str(recipe), "--out", str(out),
               *extra]
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=out.parent)


def without(out, *stages: str) -> None:
    """Remove these stages' cache entries and the built target folder: a build into `out` has them to make."""
    for stage in stages:
        for name in entries_of(cache_entries(out), stage):
            shutil.rmtree(out / "cache" / name)
    shutil.rmtree(out / "rpi5")


def finish(child: subprocess.Popen, log_path) -> tuple[int, str]:
    try:
        code = child.wait(timeout=300)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return code, log_path.read_text()


def test_two_builds_into_one_out_at_once_build_each_stage_once(built, tmp_path):
    without(built.out, "export", "quantize")
    logs = [tmp_path / "first.txt", tmp_path / "second.txt"]
    handles = [open(path, "w") for path in logs]
    try:
        children = [start_build(built.recipe, built.out, handle) for handle in handles]
        results = [finish(child, path) for child, path in zip(children, logs)]
    finally:
        for handle in handles:
            handle.close()

    for code, output in results:
        assert code == 0, output
        assert "Traceback" not in output
    statuses = [stage_statuses(output) for _, output in results]
    for stage in ("export", "quantize"):
        assert sorted(s[stage] for s in statuses) == ["built", "cached"], statuses  # built by one, reused by the other
    assert len(entries_of(cache_entries(built.out), "quantize")) == 1
    assert staging_leftovers(built.out) == []
    report = report_json.read(built.out / "rpi5" / "report.json")
    assert report.target == "rpi5"


def test_second_build_waits_for_the_lock_and_says_so(built, tmp_path):
    log_path = tmp_path / "build.txt"
    with open(built.out / LOCK, "a+") as lock, open(log_path, "w") as log:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as a running build holds it
        child = start_build(built.recipe, built.out, log)
        deadline = time.monotonic() + 120
        while "waiting for it" not in plain(log_path.read_text()):
            assert child.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        assert child.poll() is None  # still waiting while the lock is held
    code, output = finish(child, log_path)  # the lock was released when the file closed

    assert code == 0, output
    assert f"--out {built.out}: another edgetune build" in plain(output)
    assert stage_statuses(output)["bench"] == "up to date"


def test_no_wait_exits_2_naming_the_folder(built):
    with open(built.out / LOCK, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lock.truncate(0)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        result = build(built.recipe, built.out, "--no-wait")

    assert result.exit_code == 2, result.output
    assert (f"--out {built.out}: another edgetune build (process {os.getpid()}) is writing to this folder; "
            "drop --no-wait to wait for it") in plain(result.output)
    assert "Traceback" not in result.output


def test_lock_of_a_killed_build_is_taken_over(built):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"handle = open({str(built.out / LOCK)!r}, 'a+')\n"
        "fcntl.flock(handle, fcntl.LOCK_EX); handle.truncate(0); handle.write(f'{os.getpid()}\\n'); handle.flush()\n"
        "print('locked', flush=True); time.sleep(120)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        holder.send_signal(signal.SIGKILL)  # no cleanup runs: the kernel drops its lock
        holder.wait(timeout=30)
        result = build(built.recipe, built.out, "--no-wait")
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()

    assert result.exit_code == 0, result.output
    assert stage_statuses(result.output)["bench"] == "up to date"
