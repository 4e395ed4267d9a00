"""edgetune in scripts: --json documents on stdout, whole names when piped, `edgetune predict`, the Python API."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from click.testing import CliRunner

import edgetune
from edgetune import bundle_predict
from edgetune.cli import main
from edgetune.report_json import Report
from helpers import BUILTIN_TARGETS, REPO, SMART_HOME, build, invoke


def run_cli(*args, stdin: str | None = None):
    """`edgetune ARGS` in this process, stdout and stderr apart."""
    return CliRunner().invoke(main, [str(a) for a in args], input=stdin, catch_exceptions=False)


def run_process(*args, stdin: str | None = None) -> subprocess.CompletedProcess:
    """`python -m edgetune ARGS` as a user's shell runs it: stdout a pipe, stderr apart."""
    env = os.environ | {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("COLUMNS", None)  # a pipe's own width (80) is what truncated names before
    return subprocess.run([sys.executable, "-m", "edgetune", *map(str, args)], input=stdin, capture_output=True,
                          text=True, env=env, timeout=300)


# --- targets ---------------------------------------------------------------------------------------------

def test_targets_json_lists_every_target_with_its_profile():
    result = run_cli("targets", "--json")
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert [t["name"] for t in document["targets"]] == BUILTIN_TARGETS
    rpi5 = next(t for t in document["targets"] if t["name"] == "rpi5")
    assert rpi5["arch"] == "aarch64" and rpi5["budgets"]["p95_ms"] == 25.0


def test_targets_piped_shows_every_name_whole():
    piped = run_process("targets")
    assert piped.returncode == 0, piped.stderr
    assert "…" not in piped.stdout
    names = {line.split("│")[1].strip() for line in piped.stdout.splitlines() if line.count("│") >= 6}
    assert names == set(BUILTIN_TARGETS)
    as_json = run_process("targets", "--json")
    assert [t["name"] for t in json.loads(as_json.stdout)["targets"]] == BUILTIN_TARGETS


# --- build, bench, status, gate ----------------------------------------------------------------------------

def test_build_json_is_one_document_on_stdout_and_the_log_stays_on_stderr(built):
    finished = run_process("build", "--target", "rpi5", "--recipe", built.recipe, "--out", built.out, "--json")
    assert finished.returncode == 0, finished.stderr
    document = json.loads(finished.stdout)
    report = json.loads((built.out / "rpi5" / "report.json").read_text())
    assert document["ok"] and document["report"]["accuracy"] == report["accuracy"]
    assert [s["stage"] for s in document["stages"]][-1] == "bench"
    assert document["bundle"] == str(built.out / "rpi5" / "bundle")
    assert "rpi5: p95" in finished.stderr and "rpi5: p95" not in finished.stdout


def test_bench_json_carries_the_new_measurement(built):
    finished = run_process("bench", "--target", "rpi5", "--recipe", built.recipe, "--out", built.out, "--json")
    assert finished.returncode == 0, finished.stderr
    document = json.loads(finished.stdout)  # the one document, though bench ran
    assert document["stages"][-1]["status"] == "measured"
    assert document["report"] == json.loads((built.out / "rpi5" / "report.json").read_text())


def test_bad_input_with_json_is_a_json_error_and_exit_2(tmp_path):
    result = run_cli("build", "--target", "no-such-board", "--out", tmp_path, "--json")
    assert result.exit_code == 2
    document = json.loads(result.stdout)
    assert document == {"ok": False, "error": "bad input", "message": document["message"], "exit_code": 2}
    assert "no-such-board" in document["message"]


def test_status_json_lists_cache_builds_and_plan(base_build):
    result = run_cli("status", "--out", base_build.out, "--target", "rpi5", "--recipe", base_build.recipe, "--json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert {e["stage"] for e in document["cache"]} >= {"teacher", "distill", "tune", "export", "quantize", "baseline"}
    assert [b["target"] for b in document["builds"]] == ["rpi5"]
    assert set(document["plan"]["stages"].values()) == {"cached"}


def test_status_data_plans_like_build_data(base_build, tmp_path):
    same = run_cli("status", "--out", base_build.out, "-t", "rpi5", "-r", base_build.recipe, "--data", SMART_HOME,
                   "--json")
    assert set(json.loads(same.stdout)["plan"]["stages"].values()) == {"cached"}  # the same files: nothing to build
    data = tmp_path / "data"
    shutil.copytree(SMART_HOME, data)
    with open(data / "train.csv", "a", encoding="utf-8") as handle:
        handle.write("switch the hallway lights off please,lights_off\n")
    other = run_cli("status", "--out", base_build.out, "-t", "rpi5", "-r", base_build.recipe, "--data", data, "--json")
    assert json.loads(other.stdout)["plan"]["stages"]["teacher"] == "to build"


def test_gate_json_has_every_check_and_the_exit_code(base_build):
    build_dir = base_build.out / "rpi5"
    result = run_cli("gate", "--baseline", build_dir, build_dir, "--recorded", "--json")
    document = json.loads(result.stdout)
    assert result.exit_code == document["exit_code"] == 0
    assert document["mode"] == "recorded" and document["regressions"] == []
    assert {"p95 latency", "accuracy"} <= {c["name"] for c in document["checks"]}
    missing = run_cli("gate", "--baseline", build_dir / "nowhere", build_dir, "--json")
    assert missing.exit_code == 2 and json.loads(missing.stdout)["error"] == "bad input"


# --- predict -----------------------------------------------------------------------------------------------

def test_predict_from_arguments_gives_json_lines_as_predict_py(base_build):
    bundle = base_build.out / "rpi5" / "bundle"
    texts = ["turn off the kitchen lights", "what's the weather tomorrow", "lock the front door"]
    result = run_cli("predict", bundle, *texts, "--top-k", "2")
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    # The CLI answers as predict.py does: with the bundle's calibration (confidence.json) applied.
    expected = bundle_predict.predict(texts, *bundle_predict.load(bundle), bundle_predict.load_confidence(bundle))
    assert [(x["text"], x["label"]) for x in lines] == [(t, label) for t, (label, _) in zip(texts, expected)]
    for line, (_, score) in zip(lines, expected):
        assert abs(line["score"] - score) < 1e-5
        assert len(line["top_k"]) == 2 and line["top_k"][0] == {"label": line["label"], "score": line["score"]}
        assert line["top_k"][0]["score"] >= line["top_k"][1]["score"]


def test_predict_reads_stdin_lines_in_a_real_pipe(base_build):
    build_dir = base_build.out / "rpi5"  # a build folder works as well as its bundle
    texts = (SMART_HOME / "test.csv").read_text().splitlines()[1:]
    texts = [line.rsplit(",", 1)[0].strip('"') for line in texts][:40]  # more than one batch of 32
    finished = run_process("predict", build_dir, stdin="\n".join(texts) + "\n\n")
    assert finished.returncode == 0, finished.stderr
    lines = [json.loads(line) for line in finished.stdout.splitlines()]
    expected = bundle_predict.predict(texts[:32], *bundle_predict.load(build_dir / "bundle"))
    expected += bundle_predict.predict(texts[32:], *bundle_predict.load(build_dir / "bundle"))
    assert [x["label"] for x in lines] == [label for label, _ in expected]
    assert [x["text"] for x in lines] == texts


def test_predict_on_a_folder_that_is_no_bundle_is_bad_input(tmp_path):
    result = invoke("predict", tmp_path, "hello")
    assert result.exit_code == 2 and "not an edgetune bundle" in result.output
    empty = run_cli("predict", tmp_path, stdin="")
    assert empty.exit_code == 2


# --- the Python API ----------------------------------------------------------------------------------------

def test_python_api_build_returns_the_typed_report(built):
    report = edgetune.build("rpi5", recipe=built.recipe, out=built.out, overrides={"bench.max_seconds": 1})
    assert isinstance(report, Report)
    assert report.target == "rpi5"
    assert report.accuracy == json.loads((built.out / "rpi5" / "report.json").read_text())["accuracy"]


def test_python_api_bad_input_raises_bad_input(tmp_path):
    import pytest

    from edgetune.errors import BadInput

    with pytest.raises(BadInput, match="no-such-board"):
        edgetune.build("no-such-board", out=tmp_path)


def test_cli_build_and_api_share_the_cache(built):
    result = build(built.recipe, built.out, "--json")
    assert json.loads(result.stdout)["stages"][0]["status"] == "cached"
