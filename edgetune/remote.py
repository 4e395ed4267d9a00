"""Bench a bundle on a real device over SSH: copy what changed, run edgetune/on_device.py there, read the result.

Three OpenSSH connections, each bounded in time:
  1. probe: the device's Python runs on_device.py (sent on stdin): which packages import, the sha256 of every file
     already in its working folder, free disk, and a description of the device (edgetune.host.describe's shape);
  2. copy: only the files whose sha256 differs, as a tar stream unpacked by the device's Python into
     DIR/.incoming (nothing on the device changes until the copy is complete);
  3. run: on_device.py moves .incoming into place, checks every hash, then times the bundle on real test texts.

ssh runs with BatchMode=yes (never a password prompt), StrictHostKeyChecking=yes (an unknown or changed host key
is an error, not a question) and ConnectTimeout, so a dead or misconfigured device fails within 20 s with one
message that names the host and the fix. Nothing local is written or removed.
"""

from __future__ import annotations

import io
import json
import re
import shlex
import statistics
import subprocess
import tarfile
import time
from dataclasses import replace
from pathlib import Path

from edgetune.artifacts import require_bundle
from edgetune.errors import BadInput, StageFailed
from edgetune.targets import Remote, Target

CONNECT_TIMEOUT_S = 8  # TCP connect; the whole probe is capped by PROBE_TIMEOUT_S
PROBE_TIMEOUT_S = 18  # every failure to reach, log in or find onnxruntime is reported within 20 s
SCRIPT = Path(__file__).with_name("on_device.py")
RUNTIME = Path(__file__).with_name("runtime.py")
REQUIREMENTS = "onnxruntime numpy tokenizers"


def device_script() -> bytes:
    """on_device.py with edgetune/runtime.py inlined in front of it as the module `edgetune_runtime`: one file that
    runs on a bare interpreter (over ssh on stdin, under emulation), timing by the very rules the host uses."""
    preamble = ("import sys, types\n"
                "edgetune_runtime = types.ModuleType('edgetune_runtime')\n"
                "sys.modules['edgetune_runtime'] = edgetune_runtime  # before exec: dataclasses look their module up\n"
                f"exec(compile({RUNTIME.read_text()!r}, 'edgetune_runtime.py', 'exec'), edgetune_runtime.__dict__)\n"
                "del sys, types\n")
    return (preamble + SCRIPT.read_text()).encode()


def parse_remote(spec: str, base: Remote | None = None) -> Remote:
    """`[user@]host[:port]` (the --remote option) -> Remote; other settings come from `base` (the profile's)."""
    match = re.fullmatch(r"(?:([^@\s:]+)@)?(\[[0-9a-fA-F:]+\]|[^@\s:\[\]]+)(?::(\d+))?", spec.strip())
    if not match:
        raise BadInput(f"--remote {spec!r}: expected [user@]host[:port], e.g. pi@raspberrypi.local:22")
    user, host, port = match.groups()
    host = host.strip("[]")
    if port is not None and not 1 <= int(port) <= 65535:
        raise BadInput(f"--remote {spec!r}: port {port} is not within 1-65535")
    remote = base or Remote(host=host)
    return replace(remote, host=host, user=user or (base.user if base else None), port=int(port) if port else remote.port)


def ssh_command(remote: Remote) -> list[str]:
    args = ["ssh", "-p", str(remote.port),
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",
            "-o", "PasswordAuthentication=no", "-o", "KbdInteractiveAuthentication=no", "-o", "LogLevel=ERROR"]
    if remote.identity_file:
        args += ["-i", str(Path(remote.identity_file).expanduser()), "-o", "IdentitiesOnly=yes"]
    if remote.known_hosts:
        args += ["-o", f"UserKnownHostsFile={Path(remote.known_hosts).expanduser()}",
                 "-o", "GlobalKnownHostsFile=/dev/null"]
    if remote.user:
        args += ["-l", remote.user]
    return args + [remote.host]


def bench_settings(target: Target, settings, *, seed: int = 0) -> dict:
    return {"threads": target.intra_op_threads, "provider": target.execution_provider,
            "batch_size": target.batch_size, "sequence_length": target.sequence_length, "seed": seed,
            "warmup_runs": settings.warmup_runs, "min_runs": settings.min_runs, "max_runs": settings.max_runs,
            "max_seconds": settings.max_seconds, "ci_relative_halfwidth": settings.ci_relative_halfwidth}


def remote_bench(bundle_dir: Path, target: Target, settings, texts: list[str], *, seed: int = 0,
                 remote: Remote | None = None) -> dict:
    """Time `bundle_dir` on the target's device over SSH, replaying `texts` (the test split).

    `settings` is the recipe's BenchConfig; `remote` overrides target.remote (e.g. from --remote).
    Returns {"host": <edgetune.host.describe() shape, measured on the device>, "latency_ms": <Latency.summary()>
    + batch_size/sequence_length, "samples_ms", "cold_start_ms", "peak_rss_mb", "predictions" (argmax per text,
    in order), "remote": {"address", "dir", "sent", "reused", "bytes_sent", "seconds"}}.
    Raises BadInput (host key, login, missing packages, bad profile) or StageFailed (unreachable, disk full,
    the bench failing on the device), each naming the host and the fix.
    """
    remote = remote or target.remote
    if remote is None:
        raise BadInput(f"target {target.name} has no remote: add `remote: {{host: ..., user: ...}}` to "
                       f"{target.source or 'its profile'} or pass --remote user@host[:port]")
    check_local_files(remote)
    bundle_dir = require_bundle(bundle_dir, target.name, texts, "remote bench")
    started = time.perf_counter()
    script = device_script()
    params = bench_settings(target, settings, seed=seed)

    found = probe(remote, target, script, params)
    local = local_files(bundle_dir, texts)
    changed, need = sync(remote, found, local)
    params["expected_files"] = {name: digest for name, (digest, _) in local.items()}
    timeout = settings.warmup_runs * 2 + settings.max_seconds * 2 + 300
    result = run_json(remote, ["bench", remote.dir, json.dumps(params)], script, timeout, "bench")
    lengths = result["sequence_lengths"]
    return {
        "host": result["host"],
        "latency_ms": result["latency_ms"] | {  # the device's own summary: edgetune.runtime's, computed there
            "batch_size": target.batch_size,
            "sequence_length": {"min": min(lengths), "median": float(statistics.median(lengths)), "max": max(lengths)}},
        "samples_ms": result["samples_ms"],
        "cold_start_ms": result["cold_start_ms"],
        "peak_rss_mb": result["peak_rss_mb"],
        "predictions": result["predictions"],
        "remote": {"address": remote.address, "dir": found["dir"], "python": remote.python,
                   "sent": sorted(changed), "reused": sorted(set(local) - set(changed)), "bytes_sent": need,
                   "seconds": round(time.perf_counter() - started, 2)},
    }


def probe(remote: Remote, target: Target, script: bytes, params: dict) -> dict:
    """What the device has: packages, providers, the files already there, free disk; BadInput when it cannot bench."""
    found = run_json(remote, ["probe", remote.dir, json.dumps(params)], script, PROBE_TIMEOUT_S, "probe")
    if found["missing"]:
        names = ", ".join(found["missing"])
        detail = "; ".join(f"{k}: {v}" for k, v in found["missing"].items())
        raise BadInput(f"{remote.address}: {remote.python} on the device cannot import {names} ({detail[:300]}); "
                       f"install them there (`{remote.python} -m pip install {REQUIREMENTS}`) or point "
                       "remote.python at an interpreter that has them")
    if target.execution_provider not in found.get("providers", [target.execution_provider]):
        raise BadInput(f"{remote.address}: the device's onnxruntime lacks {target.execution_provider} (it has "
                       f"{', '.join(found['providers'])}); install the build with that provider there (e.g. "
                       "onnxruntime-gpu for CUDAExecutionProvider) or bench a CPU target")
    return found


def sync(remote: Remote, found: dict, local: dict[str, tuple[str, Path | bytes]]) -> tuple[list[str], int]:
    """Send the files whose sha256 differs from the device's copy: (the names sent, their bytes)."""
    changed = [name for name, (digest, _) in local.items() if found["files"].get(name) != digest]
    need = sum(len(local[name][1]) if isinstance(local[name][1], bytes) else local[name][1].stat().st_size
               for name in changed)
    if need and need * 1.05 + (1 << 20) > found["free_bytes"]:
        raise disk_full(remote, found["dir"], found["free_bytes"], need)
    if changed:
        send(remote, found["dir"], {name: local[name][1] for name in changed}, need)
    return changed, need


def check_local_files(remote: Remote) -> None:
    for what, value in (("identity_file", remote.identity_file), ("known_hosts", remote.known_hosts)):
        if value and not Path(value).expanduser().is_file():
            raise BadInput(f"remote {remote.address}: {what} {value} not found; fix remote.{what} in the target profile")


def local_files(bundle_dir: Path, texts: list[str]) -> dict[str, tuple[str, Path | bytes]]:
    """{path on the device (relative to remote.dir): (sha256, local file or content)}."""
    import hashlib

    from edgetune.runtime import file_sha256

    files: dict[str, tuple[str, Path | bytes]] = {}
    for path in sorted(bundle_dir.iterdir()):
        if path.is_file() and path.name != "manifest.json":
            files[f"bundle/{path.name}"] = (file_sha256(path), path)
    data = json.dumps(texts).encode()
    files["texts.json"] = (hashlib.sha256(data).hexdigest(), data)
    return files


def send(remote: Remote, folder: str, files: dict[str, Path | bytes], need: int) -> None:
    """One tar stream over ssh, unpacked by the device's Python into FOLDER/.incoming."""
    unpack = ("import shutil, sys, tarfile\n"
              "kw = {'filter': 'data'} if hasattr(tarfile, 'data_filter') else {}\n"
              "try:\n"
              "    tarfile.open(fileobj=sys.stdin.buffer, mode='r|').extractall(sys.argv[1], **kw)\n"
              "except BaseException:\n"
              "    shutil.rmtree(sys.argv[1], ignore_errors=True)  # a partial copy must not eat the disk\n"
              "    raise\n")
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w") as tar:
        for name, source in files.items():
            if isinstance(source, bytes):
                info = tarfile.TarInfo(name)
                info.size, info.mtime = len(source), int(time.time())
                tar.addfile(info, io.BytesIO(source))
            else:
                tar.add(str(source), arcname=name)
    command = f"{shlex.quote(remote.python)} -c {shlex.quote(unpack)} {shlex.quote(folder + '/.incoming')}"
    # Generous for a slow link: 1 MB/s plus a minute.
    proc = call(remote, command, stream.getvalue(), timeout=60 + need / 1e6, step="copy")
    if proc.returncode != 0:
        stderr = proc.stderr.decode(errors="replace")
        if "No space left on device" in stderr or "Errno 28" in stderr:
            raise disk_full(remote, folder, None, need)
        raise ssh_error(remote, proc.returncode, stderr, "copy")


def run_json(remote: Remote, args: list[str], script: bytes, timeout: float, step: str) -> dict:
    command = " ".join(shlex.quote(a) for a in [remote.python, "-", *args])
    proc = call(remote, command, script, timeout=timeout, step=step)
    stdout, stderr = proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
    if proc.returncode != 0:
        if "No space left on device" in stderr or "Errno 28" in stderr:
            raise disk_full(remote, remote.dir, None, 0)
        raise ssh_error(remote, proc.returncode, stderr, step)
    try:
        return json.loads(stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise StageFailed(f"{remote.address}: the device's {step} printed no result (stdout: {stdout[-300:]!r}, "
                          f"stderr: {stderr[-500:]!r})") from None


def call(remote: Remote, command: str, stdin: bytes, *, timeout: float, step: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(ssh_command(remote) + [command], input=stdin, capture_output=True, timeout=timeout)
    except FileNotFoundError:
        raise BadInput("ssh not found on this host; install the OpenSSH client (apt-get install openssh-client)") from None
    except subprocess.TimeoutExpired:
        raise StageFailed(f"{remote.address}: no answer to the {step} step within {timeout:.0f} s (the host accepts "
                          "connections but does not respond); check the device is up and not overloaded, "
                          f"e.g. `ssh -p {remote.port} {remote.user + '@' if remote.user else ''}{remote.host} true`") from None


def ssh_error(remote: Remote, code: int, stderr: str, step: str) -> Exception:
    """One exception with one message naming the host and the fix, from ssh's exit code and stderr."""
    where = remote.address
    login = f"{remote.user + '@' if remote.user else ''}{remote.host}"
    tail = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit status {code}"
    known = remote.known_hosts or "~/.ssh/known_hosts"
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr:
        return BadInput(f"{where}: the host key CHANGED since it was recorded in {known}: the device was reinstalled, "
                        "or someone is in the middle. If you trust the new key, remove the old one with "
                        f"`ssh-keygen -R '[{remote.host}]:{remote.port}' -f {known}` and record the new one")
    if "Host key verification failed" in stderr or "host key is known" in stderr.lower():
        return BadInput(f"{where}: unknown host key (not in {known}); record it once after checking its fingerprint: "
                        f"`ssh-keyscan -p {remote.port} {remote.host} >> {known}` (or `ssh -p {remote.port} {login}` "
                        "interactively), then rerun")
    if "Permission denied" in stderr or "Too many authentication failures" in stderr:
        key = remote.identity_file or "your default key (~/.ssh/id_*)"
        return BadInput(f"{where}: login refused for {login} with {key}: the device does not accept that key. "
                        f"Install it there (`ssh-copy-id -i {key}.pub -p {remote.port} {login}`) or fix "
                        "remote.user / remote.identity_file")
    if "UNPROTECTED PRIVATE KEY FILE" in stderr or "bad permissions" in stderr:
        return BadInput(f"{where}: ssh refuses the key {remote.identity_file}: its permissions are too open; "
                        f"`chmod 600 {remote.identity_file}`")
    if "Could not resolve hostname" in stderr:
        return BadInput(f"{where}: cannot resolve the host name {remote.host}; fix remote.host (or --remote)")
    unreachable = ("Connection refused", "Connection timed out", "No route to host", "Network is unreachable",
                   "Connection closed", "Connection reset", "timed out")
    if code == 255 and any(s in stderr for s in unreachable):
        return StageFailed(f"{where}: cannot reach the device ({tail}); check it is on, that sshd listens on port "
                           f"{remote.port}, and remote.host/remote.port (or --remote)")
    if code == 127:
        return BadInput(f"{where}: {remote.python} does not run on the device ({tail}); set remote.python to an "
                        f"interpreter that has {REQUIREMENTS}")
    if code == 255:
        return StageFailed(f"{where}: ssh failed during the {step} step ({tail}); try `ssh -p {remote.port} {login}`")
    return StageFailed(f"{where}: the {step} step failed on the device (exit {code}):\n{stderr.strip()[-1500:]}")


def disk_full(remote: Remote, folder: str, free: int | None, need: int) -> StageFailed:
    have = f"{free / 1e6:.1f} MB free, " if free is not None else ""
    return StageFailed(f"{remote.address}: no space left on the device's disk at {folder} ({have}the bundle needs "
                       f"{need / 1e6:.1f} MB); free space there or set remote.dir to a larger filesystem. "
                       "Nothing local was changed, and the device's previous copy was not touched.")

