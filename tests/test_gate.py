"""edgetune gate on tiny real bundles built in the test (a few-node ONNX graph, a WordLevel tokenizer).

Two bundles gate in about a second; only a candidate that is genuinely many times slower (a chain of
256x256 MatMuls) is expected to fail on latency, so nothing here depends on how fast or busy the host is.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import report_dict

from edgetune import gate
from edgetune.cli import main

WORDS = ("turn on off the kitchen living room lights lamp play pause music set a timer for five minutes lock "
         "unlock front door open close blinds what is temperature").split()
LABELS = ["lights_on", "lights_off", "music", "timer", "door"]
TEXTS = ["turn on the kitchen lights", "turn off the lamp", "play music", "pause the music",
         "set a timer for five minutes", "lock the front door", "unlock the door", "turn on the living room lamp",
         "open the blinds", "close the blinds", "what is the temperature", "turn off the living room lights"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
DEFAULT_MAX_SECONDS = gate.MAX_SECONDS  # before the fixture below shortens it


@pytest.fixture(autouse=True)
def quick_gate(monkeypatch):
    """Shorter minimum measuring time than the CI defaults: the tests only need clear-cut verdicts."""
    monkeypatch.setattr(gate.measure, "MIN_SECONDS", 0.3)
    monkeypatch.setattr(gate.measure, "MIN_RUNS", 100)
    monkeypatch.setattr(gate.measure, "MAX_SECONDS", 2.0)
    monkeypatch.setattr(gate.measure, "EPOCH_SECONDS", 0.2)


def plain(text: str) -> str:
    return " ".join(ANSI.sub("", text).split())


def invoke(*args) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["gate", *map(str, args)], catch_exceptions=False)
    return result.exit_code, plain(result.output)


# --- tiny bundles ------------------------------------------------------------------------------------------

def tiny_onnx(path: Path, vocab_size: int, *, heavy: int = 0, hidden: int = 16, width: int = 256) -> None:
    """input_ids, attention_mask (int64) -> Gather -> masked ReduceMean -> MatMul -> logits.

    heavy > 0 puts a chain of `heavy` [width x width] MatMuls on every token before the mean: real work.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    init = lambda name, a: numpy_helper.from_array(np.asarray(a), name)  # noqa: E731
    inits = [init("emb", rng.standard_normal((vocab_size, hidden)).astype(np.float32)),
             init("axes_last", np.array([-1], dtype=np.int64)),
             init("w_out", rng.standard_normal((hidden, len(LABELS))).astype(np.float32))]
    nodes = [helper.make_node("Gather", ["emb", "input_ids"], ["e"]),
             helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["m", "axes_last"], ["m3"]),
             helper.make_node("Mul", ["e", "m3"], ["x0"])]
    x = "x0"
    if heavy:
        inits.append(init("w_up", (rng.standard_normal((hidden, width)) / np.sqrt(hidden)).astype(np.float32)))
        nodes.append(helper.make_node("MatMul", [x, "w_up"], ["h0"]))
        x = "h0"
        for i in range(heavy):
            inits.append(init(f"w{i}", (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)))
            nodes.append(helper.make_node("MatMul", [x, f"w{i}"], [f"h{i + 1}"]))
            x = f"h{i + 1}"
        inits.append(init("w_down", (rng.standard_normal((width, hidden)) / np.sqrt(width)).astype(np.float32)))
        nodes.append(helper.make_node("MatMul", [x, "w_down"], ["x1"]))
        x = "x1"
    nodes += [helper.make_node("ReduceMean", [x], ["pooled"], axes=[1], keepdims=0),
              helper.make_node("MatMul", ["pooled", "w_out"], ["logits"])]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(LABELS)])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def tiny_tokenizer(path: Path) -> int:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[PAD]": 0, "[UNK]": 1} | {w: i + 2 for i, w in enumerate(dict.fromkeys(WORDS))}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(path))
    return len(vocab)


@pytest.fixture(scope="module")
def test_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "test.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i, text in enumerate(TEXTS * 4):
            writer.writerow([text, LABELS[i % len(LABELS)]])
    return path


def make_build(folder: Path, test_csv: Path, *, heavy: int = 0, target: str = "rpi5", accuracy: float = 0.90,
               p95: float = 1.0, samples: list[float] | None = None, sha: str | None = None,
               bundle: bool = True) -> Path:
    """A finished build folder (DIR/<target>): report.json with the fields the gate reads, and a bundle."""
    folder.mkdir(parents=True)
    if bundle:
        b = folder / "bundle"
        b.mkdir()
        tiny_onnx(b / "model.onnx", tiny_tokenizer(b / "tokenizer.json"), heavy=heavy)
        (b / "labels.json").write_text(json.dumps(LABELS))
        (b / "preprocess.json").write_text(json.dumps({"max_length": 16, "pad_id": 0, "pad_token": "[PAD]"}))
        (b / "manifest.json").write_text(json.dumps({"stage": "bench", "material": {
            "config": {"data": {"test": str(test_csv)}},
            "target": {"name": target, "threads": 1, "cores": 1, "sequence_length": None}}}))
    latency = {"p50": p95 / 2, "p95": p95, "p99": p95 * 1.2, "p95_ci": [p95 * 0.97, p95 * 1.03],
               "p50_ci": [p95 / 2 * 0.98, p95 / 2 * 1.02], "runs": 500, "batch_size": 1}
    if samples is not None:
        latency["samples"] = samples
    report = report_dict(target=target, accuracy=accuracy, latency=latency, test_examples=len(TEXTS) * 4,
                         test_set_sha256=sha or hashlib.sha256(test_csv.read_bytes()).hexdigest())
    (folder / "report.json").write_text(json.dumps(report))
    return folder


@pytest.fixture(scope="module")
def light(tmp_path_factory, test_csv) -> Path:
    return make_build(tmp_path_factory.mktemp("light") / "rpi5", test_csv)


@pytest.fixture(scope="module")
def light_copy(tmp_path_factory, light) -> Path:
    copy = tmp_path_factory.mktemp("light-copy") / "rpi5"
    shutil.copytree(light, copy)
    return copy


@pytest.fixture(scope="module")
def heavy(tmp_path_factory, test_csv) -> Path:
    return make_build(tmp_path_factory.mktemp("heavy") / "rpi5", test_csv, heavy=8)


# --- verdicts ----------------------------------------------------------------------------------------------

def test_identical_builds_pass_and_write_junit(light, light_copy, tmp_path):
    junit = tmp_path / "ci" / "gate.xml"
    code, out = invoke("--baseline", light, light_copy, "--junit", junit)
    assert code == 0, out
    assert "gate: PASS" in out and "re-measured both bundles" in out
    assert "p95 latency" in out and "median latency" in out
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites" and root.get("failures") == "0" and root.get("errors") == "0"
    suite = root.find("testsuite")
    assert suite.get("tests") == "4" and suite.get("failures") == "0"
    names = [case.get("name") for case in suite.iter("testcase")]
    assert names == ["p95 latency", "median latency", "accuracy", "macro-F1"]
    assert not list(suite.iter("failure"))
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["mode"] == "re-measured" and int(props["runs_per_bundle"]) >= 100


def test_much_slower_candidate_fails_on_p95(light, heavy, tmp_path):
    junit = tmp_path / "gate.xml"
    code, out = invoke("--baseline", light, heavy, "--junit", junit)
    assert code == 1, out
    match = re.search(r"p95 latency regressed: candidate/baseline = ([\d.]+) \[([\d.]+), ([\d.]+)\] > 1\.05", out)
    assert match, out
    ratio, lo, hi = map(float, match.groups())
    assert lo <= ratio <= hi
    assert "gate: FAIL" in out
    suite = ET.parse(junit).getroot().find("testsuite")
    failures = {case.get("name"): case.find("failure") for case in suite.iter("testcase")}
    assert failures["p95 latency"] is not None and "p95 latency regressed" in failures["p95 latency"].get("message")
    assert failures["accuracy"] is None and failures["macro-F1"] is None
    assert int(suite.get("failures")) >= 1


def test_a_faster_candidate_passes(light, heavy):
    code, out = invoke("--baseline", heavy, light)
    assert code == 0, out
    assert "gate: PASS" in out


def test_accuracy_drop_fails(tmp_path, light, test_csv):
    worse = make_build(tmp_path / "worse" / "rpi5", test_csv, accuracy=0.88)
    code, out = invoke("--baseline", light, worse, "--junit", tmp_path / "j.xml")
    assert code == 1, out
    assert "accuracy regressed: candidate 0.8800 < baseline 0.9000 - 0.005" in out
    cases = {c.get("name"): c for c in ET.parse(tmp_path / "j.xml").getroot().iter("testcase")}
    assert cases["accuracy"].find("failure") is not None


def test_accuracy_within_the_allowed_drop_passes(tmp_path, light, test_csv):
    near = make_build(tmp_path / "near" / "rpi5", test_csv, accuracy=0.90 - 0.004)
    code, out = invoke("--baseline", light / "report.json", near / "report.json", "--recorded")
    assert code == 0, out


def test_fail_on_budget_fails_on_the_candidates_missed_budget_and_says_which(tmp_path, light, test_csv):
    over = make_build(tmp_path / "over" / "rpi5", test_csv, bundle=False)
    report = json.loads((over / "report.json").read_text())
    report["budgets"] = {"size_mb": {"limit": 0.001, "value": 0.01, "ok": False, "evidence": "host-independent"},
                         "p95_ms": {"limit": 25.0, "evidence": "not checked on the target", "host_value": 1.0}}
    (over / "report.json").write_text(json.dumps(report))
    code, out = invoke("--baseline", light / "report.json", over, "--recorded")
    assert code == 0, out  # budgets are not the gate's business unless asked
    junit = tmp_path / "gate.xml"
    code, out = invoke("--baseline", light / "report.json", over, "--recorded", "--fail-on-budget", "--junit", junit)
    assert code == 1, out
    assert "budget size_mb missed: 0.01 is above the limit 0.001 (the same on any host)" in out
    assert "budget p95_ms: not checked on the target rpi5" in out and "gate: FAIL" in out
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    assert cases["budget size_mb"].find("failure").get("type") == "over-budget"
    assert cases["budget p95_ms"].find("failure") is None


# --- recorded numbers --------------------------------------------------------------------------------------

def test_without_bundles_compares_recorded_numbers_and_says_so(tmp_path, test_csv):
    rng = np.random.default_rng(0)
    fast = list(np.round(rng.lognormal(0, 0.2, 800), 4))
    base = make_build(tmp_path / "a" / "rpi5", test_csv, bundle=False, samples=fast)
    same = make_build(tmp_path / "b" / "rpi5", test_csv, bundle=False, samples=list(rng.permutation(fast)))
    code, out = invoke("--baseline", base, same)
    assert code == 0, out
    assert "compared RECORDED latency" in out and "not on this host" in out

    slow = make_build(tmp_path / "c" / "rpi5", test_csv, bundle=False, p95=2.0, samples=[2 * x for x in fast])
    code, out = invoke("--baseline", base, slow)
    assert code == 1, out
    assert re.search(r"p95 latency regressed \(recorded numbers\): candidate/baseline = 2\.00 \[1\.\d\d, 2\.\d\d\]",
                     out)


def test_recorded_without_samples_uses_the_recorded_intervals(tmp_path, test_csv):
    base = make_build(tmp_path / "a" / "rpi5", test_csv, bundle=False, p95=1.0)
    slow = make_build(tmp_path / "b" / "rpi5", test_csv, bundle=False, p95=1.5)
    code, out = invoke("--baseline", base, slow)
    assert code == 1, out
    assert "p95 latency regressed (recorded numbers): candidate/baseline = 1.50" in out
    assert "log-normal approximation" in out


# --- errors: exit 2, never 0 -------------------------------------------------------------------------------

def test_missing_file_is_an_error(tmp_path, light):
    code, out = invoke("--baseline", light, tmp_path / "nope" / "report.json", "--junit", tmp_path / "j.xml")
    assert code == 2, out
    assert "candidate" in out and "no such file or folder" in out
    root = ET.parse(tmp_path / "j.xml").getroot()
    assert root.get("errors") == "1" and root.find(".//error") is not None


def test_different_targets_is_an_error(tmp_path, light, test_csv):
    other = make_build(tmp_path / "x86-avx2", test_csv, target="x86-avx2")
    code, out = invoke("--baseline", light, other)
    assert code == 2, out
    assert "different targets" in out and "rpi5" in out and "x86-avx2" in out


def test_different_test_sets_is_an_error(tmp_path, light, test_csv):
    other = make_build(tmp_path / "other" / "rpi5", test_csv, sha="0" * 64)
    code, out = invoke("--baseline", light, other)
    assert code == 2, out
    assert "different test sets" in out


def test_unfinished_build_is_an_error(tmp_path, light):
    unfinished = tmp_path / "out" / "rpi5"
    shutil.copytree(light / "bundle", unfinished / "bundle")
    code, out = invoke("--baseline", light, unfinished)
    assert code == 2, out
    assert "no report.json" in out and "never finished" in out


def test_out_folder_instead_of_target_folder_names_the_target_folders(light):
    code, out = invoke("--baseline", light, light.parent)
    assert code == 2, out
    assert str(light) in out


def test_not_a_report_is_an_error(tmp_path, light):
    bogus = tmp_path / "report.json"
    bogus.write_text('{"hello": 1}')
    code, out = invoke("--baseline", bogus, light)
    assert code == 2, out
    assert "baseline" in out and "missing schema_version, target" in out


# --- internals ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n,q", [(9, 50), (200, 95), (201, 50), (1000, 99)])
def test_exact_bootstrap_matches_brute_force_resampling(n, q):
    rng = np.random.default_rng(n)
    x = rng.lognormal(0, 0.5, n)
    exact = gate.bootstrap_percentile(x, q, 100_000, np.random.default_rng(1))
    brute = np.percentile(x[rng.integers(0, n, size=(20_000, n))], q, axis=1)
    exact, brute = np.round(exact, 9), np.round(brute, 9)  # numpy's lerp may differ in the last bit at ties
    grid = np.unique(np.concatenate([exact, brute]))
    cdf = lambda draws: np.searchsorted(np.sort(draws), grid, side="right") / len(draws)  # noqa: E731
    assert np.max(np.abs(cdf(exact) - cdf(brute))) < 0.02  # Kolmogorov distance; sampling noise is ~0.005


def test_gate_does_not_import_torch(light, light_copy):
    code = (f"import sys; from edgetune import gate; "
            f"r = gate.run_gate({str(light)!r}, {str(light_copy)!r}, max_seconds=0.5); "
            f"print(r.mode, 'torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["re-measured", "False", "False"]


def test_help_states_the_real_default_cap():
    result = CliRunner().invoke(main, ["gate", "--help"])
    assert result.exit_code == 0
    assert f"[default: {DEFAULT_MAX_SECONDS:g}]" in plain(result.output)
