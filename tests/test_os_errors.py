"""Operating-system errors are one message naming the path and the fix: exit 2 for the user's --out, 1 for a stage
that could not write; no traceback (unless --debug), and nothing already built is touched."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgetune import oserrors
from helpers import build, invoke, plain

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="tmpfs mounts in a private mount namespace are Linux")

# Run after the build inside the namespace (the tmpfs vanishes with it): what the build left in the folder.
INSPECT = """
import json, sys
from pathlib import Path
from edgetune import artifacts
cache = Path(sys.argv[1]) / "cache"
print(json.dumps({
    "entries": sorted(p.name for p in cache.iterdir() if (p / "manifest.json").is_file()),
    "staging": sorted(str(p) for p in cache.parent.rglob(".tmp-*")),
    "damaged": {p.name: artifacts.damage(p, artifacts.read_manifest(p)) for p in cache.iterdir()
                if (p / "manifest.json").is_file()},
}))
"""


def namespace_command(mount_point: Path) -> list[str] | None:
    """An `unshare` prefix under which this process may mount a tmpfs privately, or None when the host allows none."""
    if not shutil.which("unshare"):
        return None
    mount_point.mkdir(parents=True, exist_ok=True)
    for prefix in (["unshare", "-m"], ["unshare", "-rm"]):  # root with CAP_SYS_ADMIN; else a user namespace
        probe = subprocess.run([*prefix, "sh", "-c", 'mount -t tmpfs -o size=64k tmpfs "$0"', str(mount_point)],
                               capture_output=True, timeout=30)
        if probe.returncode == 0:
            return prefix
    return None


NO_NAMESPACE = ("mounting a small tmpfs needs a private mount namespace (root with CAP_SYS_ADMIN, or unprivileged "
                "user namespaces), and this host allows neither")


def run_in_tmpfs(tmp_path: Path, options: str, script: str) -> subprocess.CompletedProcess:
    """Mount a tmpfs (`options`) on tmp_path/mnt in a private namespace, then run `script` (sh; $0 = the mount)."""
    mount_point = tmp_path / "mnt"
    prefix = namespace_command(mount_point)
    if prefix is None:
        pytest.skip(NO_NAMESPACE)
    shell = f'mount -t tmpfs -o {options} tmpfs "$0" || exit 99\n{script}'
    return subprocess.run([*prefix, "sh", "-c", shell, str(mount_point)], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)


def edgetune(*args) -> str:
    return " ".join([f'"{sys.executable}"', "-m", "edgetune", *(f'"{a}"' for a in args)])


def test_out_on_a_file_is_one_message_and_exit_2(base_build, tmp_path):
    a_file = tmp_path / "edgetune-out"
    a_file.write_text("not a folder")

    for out in (a_file, a_file / "nested"):
        result = build(base_build.recipe, out)  # a traceback would raise here

        assert result.exit_code == 2, result.output
        assert plain(result.output) == (f"error: --out {out}: {a_file} is a file, not a folder; pass a folder for "
                                        "--out, or move the file away")
    assert a_file.read_text() == "not a folder"


def test_read_only_out_is_one_message_and_exit_2(base_build, tmp_path):
    if os.geteuid() != 0:  # permissions bite: a folder this user may not write to
        out = tmp_path / "read-only"
        out.mkdir()
        out.chmod(0o555)
        try:
            result = build(base_build.recipe, out)
        finally:
            out.chmod(0o755)
        assert result.exit_code == 2, result.output
        assert plain(result.output).startswith(f"error: --out {out}: permission denied; make it writable")
        assert list(out.iterdir()) == []
        return
    # root writes through permissions: a read-only filesystem is what stops it.
    command = edgetune("build", "--target", "rpi5", "--recipe", base_build.recipe, "--out", "$0")
    result = run_in_tmpfs(tmp_path, "ro,size=64k", command)
    assert result.returncode == 2, result.stdout + result.stderr
    out = tmp_path / "mnt"
    assert plain(result.stderr) == f"error: --out {out}: the filesystem is read-only; pass --out on a writable disk"
    assert "Traceback" not in result.stdout + result.stderr


def test_full_disk_fails_the_stage_with_one_message_and_keeps_what_was_built(base_build, tmp_path):
    teacher = next((base_build.out / "cache").glob("teacher-*"))
    pages = sum(-(-p.stat().st_size // 4096) for p in teacher.rglob("*") if p.is_file())
    size_kb = pages * 4 + 64  # the teacher fits with 64 kB to spare; the distilled student does not
    script = (f'mkdir "$0/cache" && cp -r "{teacher}" "$0/cache/" || exit 98\n'
              f'{edgetune("build", "--target", "rpi5", "--recipe", base_build.recipe, "--out", "$0")} '
              f'> "{tmp_path / "build.txt"}" 2>&1\n'
              f'echo $? > "{tmp_path / "rc.txt"}"\n'
              f'"{sys.executable}" -c \'{INSPECT}\' "$0"')
    result = run_in_tmpfs(tmp_path, f"size={size_kb}k", script)
    assert result.returncode == 0, result.stdout + result.stderr
    output = (tmp_path / "build.txt").read_text()
    left = json.loads(result.stdout)

    assert (tmp_path / "rc.txt").read_text().strip() == "1", output
    assert "Traceback" not in output
    message = plain(output).split("stage failed: ", 1)[1]
    assert message.startswith(f"distill failed writing {tmp_path / 'mnt' / 'cache' / 'distill-'}")
    assert "no space left on the device; free space on that disk" in message
    assert "everything built before it is intact: rerun to resume" in message
    assert left == {"entries": [teacher.name], "staging": [], "damaged": {teacher.name: None}}


def test_debug_shows_the_traceback(base_build, tmp_path):
    a_file = tmp_path / "edgetune-out"
    a_file.write_text("")
    result = invoke("--debug", "build", "--target", "rpi5", "--recipe", base_build.recipe, "--out", a_file)
    assert result.exit_code == 2
    assert "Traceback" in result.output and "FileExistsError" in result.output
    assert f"{a_file} is a file, not a folder" in plain(result.output)


@pytest.mark.parametrize("wrapped, code", [
    (RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)"), errno.ENOSPC),
    (RuntimeError("IoError(Os { code: 30, kind: ReadOnlyFilesystem, message: \"Read-only file system\" })"),
     errno.EROFS),
    (RuntimeError("[ONNXRuntimeError] : 1 : FAIL : write failed: No space left on device"), errno.ENOSPC),
])
def test_library_errors_that_wrap_an_os_error_are_recognised(wrapped, code):
    assert oserrors.as_oserror(wrapped).errno == code


def test_other_errors_are_not_taken_for_os_errors():
    assert oserrors.as_oserror(RuntimeError("shape mismatch (os error 99999)")) is None
    assert oserrors.as_oserror(RuntimeError("export validation failed")) is None
    assert oserrors.as_oserror(ValueError("label 'No space left on device' unknown")) is None  # not a wrapper
    try:
        try:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", "labels.json")
        except OSError:
            raise KeyError("a bug while handling it")  # noqa: B904 - the point: no `from`, a bug stays a bug
    except KeyError as bug:
        assert oserrors.as_oserror(bug) is None
    wrapped = RuntimeError("could not save")
    wrapped.__cause__ = PermissionError(errno.EACCES, "Permission denied", "out/cache")
    assert oserrors.as_oserror(wrapped).filename == "out/cache"
