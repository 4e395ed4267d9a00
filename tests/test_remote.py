"""The SSH remote runner against a real OpenSSH server on 127.0.0.1 (a throwaway sshd with its own keys).

Needs /usr/sbin/sshd (Debian: apt-get install openssh-server) and ssh/ssh-keygen; skipped with that reason
otherwise. The sshd runs as the current user (or root) from a temp config, on a free port, with a generated host
key, a generated client key and its own known_hosts: nothing outside the temp folder is read or changed.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from required_groups import needs
from tiny_bundle import make_bundle, smart_home_texts

from edgetune import bundle_predict, runtime
from edgetune.errors import BadInput, StageFailed
from edgetune.host import describe
from edgetune.recipe import BenchConfig
from edgetune.remote import parse_remote, remote_bench
from edgetune.targets import Remote, load_target

SSHD = Path("/usr/sbin/sshd")
pytestmark = [
    pytest.mark.skipif(
        not SSHD.exists() or not shutil.which("ssh") or not shutil.which("ssh-keygen"),
        reason="needs OpenSSH: /usr/sbin/sshd, ssh and ssh-keygen "
               "(Debian: apt-get install openssh-server openssh-client)",
    ),
    needs("ssh"),
    pytest.mark.timeout(180),  # each talks to a real sshd; the runner's own limits are 20 s for a failure
]
FAST = BenchConfig(warmup_runs=20, min_runs=200, max_runs=3000, max_seconds=3, ci_relative_halfwidth=0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    root = tmp_path_factory.mktemp("sshd")
    host_key, client_key = keygen(root / "host_key"), keygen(root / "client_key")
    (root / "authorized_keys").write_text((root / "client_key.pub").read_text())
    port = free_port()
    (root / "sshd_config").write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
AuthorizedKeysFile {root / 'authorized_keys'}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
PidFile {root / 'sshd.pid'}
""")
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege-separation folder
    log = open(root / "sshd.log", "w")  # noqa: SIM115 -- sshd writes to it until teardown
    proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(root / "sshd_config")], stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(64).startswith(b"SSH-"):
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.close()
            pytest.skip(f"sshd did not start: {(root / 'sshd.log').read_text()[-500:]}")
        time.sleep(0.1)
    known = root / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {' '.join(host_key.with_suffix('.pub').read_text().split()[:2])}\n")
    # The device's interpreter: this venv's python behind a wrapper that logs each call, so the test can tell
    # the remote run from a local one on the same machine.
    wrapper = root / "device-python"
    wrapper.write_text(f"#!/bin/sh\necho \"$$ $1\" >> {root / 'device-calls.log'}\nexec {sys.executable} \"$@\"\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    remote = Remote(host="127.0.0.1", port=port, user=getpass.getuser(), identity_file=str(client_key),
                    known_hosts=str(known), python=str(wrapper), dir=str(root / "device"))
    yield remote, root
    proc.terminate()
    proc.wait(timeout=10)
    log.close()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    # About 0.1 ms an inference here: long enough that Python's own jitter does not make the tail.
    return make_bundle(tmp_path_factory.mktemp("bundle") / "bundle", hidden=256, ffn=1024)


def one_thread_target(remote):
    return replace(load_target("rpi5"), threads=1, remote=remote)


def test_remote_bench_measures_on_the_device_and_predicts_like_local(sshd, bundle):
    remote, root = sshd
    texts, _ = smart_home_texts("test")
    target = one_thread_target(remote)
    first = remote_bench(bundle, target, FAST, texts)

    calls = (root / "device-calls.log").read_text().split()
    assert calls.count("-") == 2 and calls.count("-c") == 1  # probe and bench (script on stdin), the copy (-c)
    assert (root / "device" / "bundle" / "model.onnx").read_bytes() == (bundle / "model.onnx").read_bytes()
    assert first["remote"]["address"] == f"{remote.user}@127.0.0.1:{remote.port}"
    assert "bundle/model.onnx" in first["remote"]["sent"] and "texts.json" in first["remote"]["sent"]
    local_host = describe(target)
    assert set(first["host"]) == set(local_host)  # the same shape as edgetune.host.describe()
    assert {k: first["host"][k] for k in ("cpu", "arch", "cores", "onnxruntime")} == \
        {k: local_host[k] for k in ("cpu", "arch", "cores", "onnxruntime")}  # loopback: the device is this machine
    assert first["host"]["threads"] == 1
    assert len(first["predictions"]) == len(texts)
    tokenizer, session, _ = bundle_predict.load(bundle)
    local_pred = np.concatenate([session.run(None, runtime.encode(texts[i:i + 32], tokenizer, session))[0].argmax(-1)
                                 for i in range(0, len(texts), 32)])
    assert first["predictions"] == local_pred.tolist()
    assert first["cold_start_ms"] > 0 and first["peak_rss_mb"] > 10
    lat = first["latency_ms"]
    assert lat["runs"] == len(first["samples_ms"]) >= FAST.min_runs
    assert lat["sequence_length"]["max"] <= 32

    # Nothing changed: the second run sends nothing but times again.
    second = remote_bench(bundle, target, FAST, texts)
    assert second["remote"]["sent"] == [] and "bundle/model.onnx" in second["remote"]["reused"]
    # Timings are real and their own (no agreement with local timings is asserted: speed is a benchmark's job).
    assert all(0 < x < 10_000 for x in second["samples_ms"]) and second["samples_ms"] != first["samples_ms"]


def test_changed_bundle_file_is_sent_again_and_stale_files_removed(sshd, bundle, tmp_path):
    remote, _ = sshd
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    (copy / "labels.json").write_text((copy / "labels.json").read_text() + "\n")
    (copy / "extra.txt").write_text("x")
    result = remote_bench(copy, one_thread_target(replace(remote, dir=str(tmp_path / "device"))),
                          replace(FAST, max_seconds=0.5, min_runs=50), ["turn on the lights"])
    assert "bundle/extra.txt" in result["remote"]["sent"]
    again = remote_bench(bundle, one_thread_target(replace(remote, dir=str(tmp_path / "device"))),
                         replace(FAST, max_seconds=0.5, min_runs=50), ["turn on the lights"])
    assert again["remote"]["sent"] == ["bundle/labels.json"]
    assert not (tmp_path / "device" / "bundle" / "extra.txt").exists()


def failure(remote, bundle) -> tuple[Exception, float]:
    start = time.monotonic()
    with pytest.raises((BadInput, StageFailed)) as info:
        remote_bench(bundle, one_thread_target(remote), FAST, ["turn on the lights"])
    return info.value, time.monotonic() - start


def test_unreachable_port(sshd, bundle):
    remote, _ = sshd
    err, seconds = failure(replace(remote, port=free_port()), bundle)
    assert isinstance(err, StageFailed) and "127.0.0.1" in str(err) and "cannot reach" in str(err)
    assert seconds < 20


def test_refused_key(sshd, bundle, tmp_path):
    remote, _ = sshd
    err, seconds = failure(replace(remote, identity_file=str(keygen(tmp_path / "other_key"))), bundle)
    assert isinstance(err, BadInput) and "127.0.0.1" in str(err) and "login refused" in str(err)
    assert "ssh-copy-id" in str(err) and seconds < 20


def test_unknown_host_key(sshd, bundle, tmp_path):
    remote, _ = sshd
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    err, seconds = failure(replace(remote, known_hosts=str(empty)), bundle)
    assert isinstance(err, BadInput) and "127.0.0.1" in str(err) and "unknown host key" in str(err)
    assert "ssh-keyscan" in str(err) and seconds < 20


def test_device_without_onnxruntime(sshd, bundle, tmp_path):
    remote, _ = sshd
    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None or subprocess.run([python, "-c", "import onnxruntime"], capture_output=True).returncode == 0:
        # Any interpreter without onnxruntime will do: a plain venv (no site packages) is one.
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
        python = str(tmp_path / "bare" / "bin" / "python")
    err, seconds = failure(replace(remote, python=python), bundle)
    assert isinstance(err, BadInput) and "127.0.0.1" in str(err) and "cannot import" in str(err)
    assert "onnxruntime" in str(err) and "pip install" in str(err) and seconds < 20
    assert not (Path(remote.dir) / ".incoming").exists()


def test_device_without_the_targets_execution_provider(sshd, bundle):
    remote, _ = sshd
    start = time.monotonic()
    with pytest.raises(BadInput, match="lacks CUDAExecutionProvider") as info:
        remote_bench(bundle, replace(load_target("cuda"), remote=remote), FAST, ["turn on the lights"])
    assert "127.0.0.1" in str(info.value) and time.monotonic() - start < 20


def test_missing_python_on_device(sshd, bundle):
    remote, _ = sshd
    err, seconds = failure(replace(remote, python="/nonexistent/python3"), bundle)
    assert isinstance(err, BadInput) and "/nonexistent/python3" in str(err) and seconds < 20


@needs("tmpfs")
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tiny tmpfs as the device's disk needs root")
def test_device_disk_full(sshd, bundle, tmp_path):
    remote, _ = sshd
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(small)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        err, seconds = failure(replace(remote, dir=str(small / "device")), bundle)
        assert isinstance(err, StageFailed) and "no space left" in str(err) and "127.0.0.1" in str(err)
        assert seconds < 20
        assert (bundle / "model.onnx").exists()  # nothing local lost
        # The copy itself hitting ENOSPC (the pre-check passed, the disk filled meanwhile): same message, no debris.
        from edgetune.remote import send

        with pytest.raises(StageFailed, match="no space left"):
            send(remote, str(small / "device"), {"bundle/model.onnx": bundle / "model.onnx"}, 700_000)
        assert not (small / "device" / ".incoming").exists()
    finally:
        subprocess.run(["umount", str(small)])


def test_parse_remote():
    assert parse_remote("pi@raspberrypi.local:2222") == Remote(host="raspberrypi.local", user="pi", port=2222)
    assert parse_remote("10.0.0.5") == Remote(host="10.0.0.5")
    base = Remote(host="old", user="pi", identity_file="~/.ssh/pi", python="/opt/venv/bin/python")
    merged = parse_remote("board", base)
    assert (merged.host, merged.user, merged.identity_file, merged.python) == ("board", "pi", "~/.ssh/pi", "/opt/venv/bin/python")
    assert parse_remote("root@[fe80::1]:22").host == "fe80::1"
    for bad in ("pi@", "a b", "host:99999", "@host"):
        with pytest.raises(BadInput):
            parse_remote(bad)


def test_target_without_remote_is_bad_input(bundle):
    with pytest.raises(BadInput, match="no remote"):
        remote_bench(bundle, load_target("rpi5"), FAST, ["x"])


def test_profile_remote_section_loads_and_is_checked(tmp_path):
    base = (Path(load_target("rpi5").source).read_text())
    good = tmp_path / "board.yaml"
    good.write_text(base + "remote: {host: pi5.local, user: pi, port: 2222, identity_file: ~/.ssh/pi, python: /opt/venv/bin/python}\n")
    remote = load_target(str(good)).remote
    assert (remote.host, remote.user, remote.port, remote.python) == ("pi5.local", "pi", 2222, "/opt/venv/bin/python")
    assert remote.known_hosts is None and remote.address == "pi@pi5.local:2222"
    typo = tmp_path / "typo.yaml"
    typo.write_text(base + "remote: {host: pi5.local, identityfile: ~/.ssh/pi}\n")
    with pytest.raises(BadInput, match="did you mean 'identity_file'"):
        load_target(str(typo))
    port = tmp_path / "port.yaml"
    port.write_text(base + "remote: {host: pi5.local, port: 70000}\n")
    with pytest.raises(BadInput, match="remote.port"):
        load_target(str(port))
    missing_key = replace(load_target(str(good)).remote, identity_file=str(tmp_path / "no-such-key"))
    with pytest.raises(BadInput, match="identity_file"):
        remote_bench(tmp_path, replace(load_target("rpi5"), remote=missing_key), FAST, ["x"])
