"""The on-device bench is the host's code path: on_device.py ships with edgetune/runtime.py inlined, runs on an
interpreter that cannot import edgetune, and its statistic and stop decision are the runtime's, exactly.

Runs the shipped script here in a subprocess, as ssh runs it on a board (`python - MODE ...` with the script on
stdin), so no OpenSSH server is needed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_bundle import make_bundle, smart_home_texts

from edgetune import runtime
from edgetune.remote import device_script

SETTINGS = {"threads": 1, "provider": "CPUExecutionProvider", "batch_size": 1, "sequence_length": None, "seed": 0,
            "warmup_runs": 5, "min_runs": 100, "max_runs": 20000, "max_seconds": 600, "ci_relative_halfwidth": 0.25}


@pytest.fixture(scope="module")
def device_dir(tmp_path_factory) -> Path:
    """A device's working folder with a bundle and texts waiting in .incoming, as remote.send leaves them."""
    root = tmp_path_factory.mktemp("device")
    make_bundle(root / ".incoming" / "bundle")
    texts, _ = smart_home_texts()
    (root / ".incoming" / "texts.json").write_text(json.dumps(texts[:40]))
    return root


def run_on_device(root: Path, tmp_path: Path, *args: str) -> dict:
    """`python - ARGS` with the shipped script on stdin, where `import edgetune` fails as on a bare board."""
    poisoned = tmp_path / "no-edgetune" / "edgetune"
    poisoned.mkdir(parents=True)
    (poisoned / "__init__.py").write_text("raise ImportError('edgetune is not installed on the device')\n")
    env = os.environ | {"PYTHONPATH": str(poisoned.parent)}
    proc = subprocess.run([sys.executable, "-", *args], input=device_script(), capture_output=True, env=env,
                          cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


def expected_files(root: Path) -> dict[str, str]:
    incoming = root / ".incoming"
    return {str(p.relative_to(incoming)): runtime.file_sha256(p) for p in incoming.rglob("*") if p.is_file()}


def test_device_bench_gives_the_hosts_statistic_and_stop_decision(device_dir, tmp_path):
    settings = SETTINGS | {"expected_files": expected_files(device_dir)}
    result = run_on_device(device_dir, tmp_path, "bench", str(device_dir), json.dumps(settings))
    samples, reason = result["samples_ms"], result["stopped_because"]
    # The same samples summarised on the host: identical p50/p95/p99 and intervals, to the last bit.
    assert result["latency_ms"] == runtime.Latency(samples, reason).summary()
    # The same stop decision: the host's rule, replayed on the device's samples, stops where the device stopped
    # (time caps are out of reach here, so the decision depends on the samples alone).
    rule = runtime.StopRule.of(SETTINGS)
    block = 50  # runtime.measure's block: the rule is asked after every block
    assert rule([samples], 0.0) == reason or reason == f"max_runs ({SETTINGS['max_runs']}) reached"
    assert rule([samples[:-block]], 0.0) is None
    assert len(samples) % block == 0 and len(samples) >= SETTINGS["min_runs"]


def test_device_probe_describes_the_host_as_the_runtime_does(device_dir, tmp_path):
    probe = run_on_device(device_dir, tmp_path, "probe", str(device_dir), json.dumps(SETTINGS))
    assert probe["missing"] == {}
    assert probe["host"] == runtime.describe_host(1, "CPUExecutionProvider")


def test_the_runtime_imports_nothing_from_the_rest_of_edgetune():
    """It ships alone: beside predict.py in a bundle, inlined in front of on_device.py on a board."""
    import ast

    tree = ast.parse(Path(runtime.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not {m for m in imported if m.split(".")[0] == "edgetune"}
    assert imported <= {"__future__", "hashlib", "json", "math", "os", "platform", "random", "time", "dataclasses",
                        "numpy", "onnxruntime", "tokenizers"}


def test_the_gate_imports_nothing_from_the_stages():
    code = "import sys, edgetune.gate; print(sorted(m for m in sys.modules if m.startswith('edgetune.stages')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_a_bundle_runs_predict_py_with_its_own_runtime_copy(tmp_path):
    """predict.py imports edgetune_runtime from beside it: the bundle needs no edgetune."""
    from edgetune import bundle_predict

    bundle = make_bundle(tmp_path / "bundle")
    shutil.copy(bundle_predict.__file__, bundle / "predict.py")
    shutil.copy(runtime.__file__, bundle / "edgetune_runtime.py")
    poisoned = tmp_path / "no-edgetune" / "edgetune"
    poisoned.mkdir(parents=True)
    (poisoned / "__init__.py").write_text("raise ImportError('no edgetune here')\n")
    out = subprocess.run([sys.executable, str(bundle / "predict.py"), "turn off the lights"], capture_output=True,
                         text=True, timeout=120, env=os.environ | {"PYTHONPATH": str(poisoned.parent)})
    assert out.returncode == 0, out.stderr[-1000:]
    label, probability = out.stdout.split("\t")
    assert label in json.loads((bundle / "labels.json").read_text()) and 0 < float(probability) <= 1


def test_predict_load_runs_at_the_bundles_intra_op_threads(tmp_path):
    """The target's thread count travels in preprocess.json; predict.load opens the session with it, as bench timed it."""
    from edgetune import bundle_predict

    bundle = make_bundle(tmp_path / "bundle")
    threads_of = lambda session: session.get_session_options().intra_op_num_threads  # noqa: E731
    assert threads_of(bundle_predict.load(bundle)[1]) == 0  # a bundle without the field: onnxruntime picks
    settings = json.loads((bundle / "preprocess.json").read_text())
    (bundle / "preprocess.json").write_text(json.dumps(settings | {"intra_op_threads": 3}))
    assert threads_of(bundle_predict.load(bundle)[1]) == 3
    assert threads_of(bundle_predict.load(bundle, threads=2)[1]) == 2  # a caller's count wins
