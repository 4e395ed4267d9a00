"""edgetune verify: a tiny bundle run under aarch64 user-mode emulation and compared with this host.

The emulated runs need root, qemu-user-static, mmdebstrap and util-linux (Debian: apt-get install
qemu-user-static mmdebstrap), and the first one downloads a Debian arm64 userland and aarch64 wheels into
$EDGETUNE_CACHE/arm64 (about 260 MB, half a minute); without the tools they are skipped, saying what is missing.
The comparison and the error messages are tested everywhere.
"""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgetune import emulation
from edgetune.cli import main
from edgetune.errors import BadInput
from edgetune.targets import load_target
from required_groups import needs
from tiny_bundle import make_bundle, smart_home_texts

MISSING = emulation.missing_tools()


def needs_emulation(test):
    """Skipped, saying what is missing, without the tools; bounded in time: the first run downloads a userland."""
    for mark in (pytest.mark.skipif(bool(MISSING), reason="aarch64 emulation needs " + "; ".join(MISSING)),
                 needs("emulation"), pytest.mark.timeout(1200)):
        test = mark(test)
    return test


def write_inputs(path: Path, n: int) -> Path:
    texts, labels = smart_home_texts("test")
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(zip(texts[:n], labels[:n]))
    return path


@needs_emulation
def test_verify_command_runs_the_bundle_on_emulated_cortex_a76(tmp_path):
    out = tmp_path / "out"
    make_bundle(out / "rpi5" / "bundle")
    inputs = write_inputs(tmp_path / "inputs.csv", 24)
    result = CliRunner().invoke(main, ["verify", "--target", "rpi5", "--out", str(out), "--inputs", str(inputs)])
    assert result.exit_code == 0, result.output
    assert "Correctness only, no timing" in result.output
    assert "24/24 identical predictions" in result.output
    report = json.loads((out / "rpi5" / "verify.json").read_text())
    assert report["kind"] == "emulated-correctness" and "no timing" in report["note"]
    assert report["emulated"]["arch"] == "aarch64"  # the script itself saw an ARM machine
    assert report["emulated"]["qemu_cpu"] == "cortex-a76" and report["emulated"]["cpu"] == "cortex-a76"
    assert report["agreement"] == 1.0 and report["max_abs_logit_diff"] < 1e-4  # fp32: only rounding differs
    assert report["texts"] == 24 and "accuracy" in report
    assert not any(k in report for k in ("latency_ms", "p95_ms", "seconds_per_text"))
    assert set(report["per_class"]) == set(json.loads((out / "rpi5" / "bundle" / "labels.json").read_text()))


@needs_emulation
def test_int8_bundle_on_emulated_jetson_uses_the_closest_qemu_cpu(tmp_path):
    bundle = make_bundle(tmp_path / "bundle", quantize=True)
    texts, _ = smart_home_texts("test")
    target = load_target("jetson-orin")
    report = emulation.verify_bundle(bundle, target, texts[:16])
    assert report["emulated"]["cpu"] == "cortex-a78ae"
    if report["emulated"]["qemu_cpu"] != "cortex-a78ae":
        assert "closest" in report["emulated"]["cpu_note"]
    assert report["agreement"] >= 0.9 and report["max_abs_logit_diff"] < 0.5


def test_compare_counts_changes_per_class():
    host = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 1.0, 2.0], [1.0, 0.9, 0.0]])
    arm = host.copy()
    arm[3] = [0.9, 1.0, 0.0]  # a borderline text flips from class a to b
    result = emulation.compare(host, arm, ["w", "x", "y", "z"], ["a", "b", "c"], truth=[0, 1, 2, 0])
    assert result["agreement"] == 0.75 and result["changed_predictions"] == 1
    assert result["per_class"]["a"] == {"host": 2, "arm": 1, "lost": 1, "gained": 0}
    assert result["per_class"]["b"] == {"host": 1, "arm": 2, "lost": 0, "gained": 1}
    assert result["changed"][0]["text"] == "z" and result["changed"][0]["host"] == "a"
    assert result["max_abs_logit_diff"] == pytest.approx(0.1)
    assert result["accuracy"] == {"host": 1.0, "arm": 0.75}


def test_missing_tools_are_named_with_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setattr(emulation.shutil, "which", lambda name: None)
    monkeypatch.setenv("EDGETUNE_CACHE", str(tmp_path))
    with pytest.raises(BadInput) as info:
        emulation.require_tools()
    message = str(info.value)
    assert "qemu-user-static" in message and "mmdebstrap" in message and "apt-get install" in message


def test_x86_target_is_refused(tmp_path):
    make_bundle(tmp_path / "out" / "x86-avx2" / "bundle")
    result = CliRunner().invoke(main, ["verify", "--target", "x86-avx2", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "aarch64" in result.output


def test_missing_bundle_says_build_first(tmp_path):
    result = CliRunner().invoke(main, ["verify", "--target", "rpi5", "--out", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "build" in result.output


def test_disagreement_below_minimum_exits_1_and_keeps_verify_json(tmp_path, monkeypatch):
    out = tmp_path / "out"
    make_bundle(out / "rpi5" / "bundle")
    labels = json.loads((out / "rpi5" / "bundle" / "labels.json").read_text())

    def fake_verify(bundle, target, texts, truth=None, *, texts_source=""):
        host = np.eye(len(labels))[: len(texts) % len(labels) or 2]
        arm = host[:, ::-1]
        return {"target": target.name, "emulated": {"qemu_cpu": "cortex-a76", "onnxruntime": "x"},
                **emulation.compare(host, arm, texts[: len(host)], labels)}

    monkeypatch.setattr(emulation, "verify_bundle", fake_verify)
    monkeypatch.setattr(emulation, "require_tools", lambda: None)
    inputs = write_inputs(tmp_path / "inputs.csv", 3)
    result = CliRunner().invoke(main, ["verify", "-t", "rpi5", "--out", str(out), "--inputs", str(inputs)])
    assert result.exit_code == 1, result.output
    assert "agree" in result.output
    assert json.loads((out / "rpi5" / "verify.json").read_text())["ok"] is False


def test_texts_default_to_the_split_the_bundle_manifest_names(tmp_path):
    bundle = make_bundle(tmp_path / "bundle")
    inputs = write_inputs(tmp_path / "named.csv", 5)
    (bundle / "manifest.json").write_text(json.dumps({"material": {"config": {"data": {"test": str(inputs)}}}}))
    texts, truth, source = emulation.verify_texts(bundle, None, None, None, ())
    assert len(texts) == 5 and source == str(inputs) and truth is not None


def test_pick_cpu_prefers_the_core_then_the_closest(monkeypatch):
    monkeypatch.setattr(emulation, "qemu_cpus", lambda: ["cortex-a53", "cortex-a72", "cortex-a76", "max"])
    monkeypatch.setattr(emulation, "qemu_binary", lambda: "qemu-aarch64-static")
    assert emulation.pick_cpu(load_target("rpi5"))[:2] == ("cortex-a76", "cortex-a76")
    core, model, note = emulation.pick_cpu(load_target("jetson-orin"))
    assert (core, model) == ("cortex-a78ae", "cortex-a76") and "closest" in note
    unnamed = replace(load_target("rpi5"), cpu=None)
    assert emulation.pick_cpu(unnamed)[1] == "cortex-a76"  # isa has asimddp: an ARMv8.2 core


@needs_emulation
def test_device_script_describes_an_arm_board(tmp_path):
    """What the remote runner reports from a Pi: the runtime's host description on an emulated Cortex-A76."""
    import subprocess

    from edgetune import runtime
    from edgetune.host import target_mismatch

    root = emulation.userland()
    site, _ = emulation.wheels(emulation.guest_python(root))
    # runtime.py imports nothing from edgetune: the guest imports it as a top-level module, as a board does.
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import runtime; "
            "print(json.dumps(runtime.describe_host(4, 'CPUExecutionProvider')))")
    command = emulation.emulated_command(root, site, "cortex-a76", emulation.fake_cpuinfo("cortex-a76", 4),
                                         ["-c", code, str(Path(runtime.__file__).parent)])
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-1000:]
    host = json.loads(proc.stdout.strip().splitlines()[-1])
    assert host["arch"] == "aarch64" and host["cpu"] == "Cortex-A76"
    assert {"neon", "asimddp"} <= set(host["flags"])  # the rpi5 profile's isa, as Linux on a Pi names it
    mismatch = target_mismatch(load_target("rpi5"), host)
    assert mismatch is None or "cores" in mismatch  # qemu-user passes this host's core count through
