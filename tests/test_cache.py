"""The stage cache: what a changed recipe, target or --force rebuilds, and what a crash or Ctrl-C leaves behind."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from edgetune.pipeline import descendants
from helpers import (
    CACHED_STAGES,
    build,
    cache_entries,
    cache_folders,
    entries_of,
    expected,
    invoke,
    manifest_identities,
    plain,
    predicted,
    stage_statuses,
    staging_leftovers,
    status_predictions,
)


def new_entries(before: set[str], out) -> set[str]:
    return cache_entries(out) - before


def stages_of(names: set[str]) -> list[str]:
    return sorted(n.split("-")[0] for n in names)


def test_rerun_of_the_same_build_reuses_every_stage(built):
    before_entries = cache_folders(built.out)
    before_files = manifest_identities(built.out)
    report_before = (built.out / "rpi5" / "report.json").read_bytes()

    result = build(built.recipe, built.out)

    assert result.exit_code == 0, result.output
    assert stage_statuses(result.output) == expected(bench="up to date")
    assert cache_folders(built.out) == before_entries
    assert manifest_identities(built.out) == before_files  # no entry (and not the bundle) was rewritten
    assert (built.out / "rpi5" / "report.json").read_bytes() == report_before


def test_status_predicts_a_full_cache_hit(built):
    result = invoke("status", "--out", built.out, "--target", "rpi5", "--recipe", built.recipe)
    assert result.exit_code == 0, result.output
    assert status_predictions(result.output) == predicted()


def test_changing_quantize_method_rebuilds_only_quantize(built):
    before = cache_entries(built.out)
    old_report = json.loads((built.out / "rpi5" / "report.json").read_text())

    result = build(built.recipe, built.out, "--set", "quantize.method=none")

    assert result.exit_code == 0, result.output
    assert stage_statuses(result.output) == expected(built=("quantize",))
    added = new_entries(before, built.out)
    assert stages_of(added) == ["quantize"]
    assert before <= cache_entries(built.out)  # the int8-dynamic entry stays for a later switch back
    report = json.loads((built.out / "rpi5" / "report.json").read_text())
    assert report["quantization"] == "none" and old_report["quantization"] == "int8-dynamic"


def test_changing_lora_rank_rebuilds_tune_export_quantize_but_not_teacher_or_distill(built):
    before = cache_entries(built.out)
    prediction = invoke("status", "--out", built.out, "--target", "rpi5", "--recipe", built.recipe,
                        "--set", "tune.r=4")
    assert status_predictions(prediction.output) == predicted(to_build=("tune", "export", "quantize"))

    result = build(built.recipe, built.out, "--set", "tune.r=4")

    assert result.exit_code == 0, result.output
    assert stages_of(new_entries(before, built.out)) == ["export", "quantize", "tune"]
    assert stage_statuses(result.output) == expected(built=("tune", "export", "quantize"))


def test_second_target_shares_teacher_distill_tune_and_export(built):
    before = cache_entries(built.out)

    result = build(built.recipe, built.out, target="x86-avx2")

    assert result.exit_code == 0, result.output
    # x86-avx2's int8 preset differs from rpi5's (reduce_range), so its quantized model is its own.
    assert stage_statuses(result.output) == expected(built=("quantize",))
    assert stages_of(new_entries(before, built.out)) == ["quantize"]
    for stage in CACHED_STAGES:
        if stage != "quantize":
            assert len(entries_of(cache_entries(built.out), stage)) == 1, stage
    assert json.loads((built.out / "x86-avx2" / "report.json").read_text())["target"] == "x86-avx2"
    assert (built.out / "rpi5" / "report.json").is_file()  # the first target's report stays


def test_force_export_rebuilds_export_and_its_descendants(built):
    before_names = cache_folders(built.out)
    before = manifest_identities(built.out)

    result = build(built.recipe, built.out, "--force", "export")

    assert result.exit_code == 0, result.output
    forced = descendants("export")  # export and every stage that reads from it, directly or not
    assert stage_statuses(result.output) == expected(built=forced)
    assert forced == ("export", "quantize", "bench")  # not baseline: it reads the teacher only
    assert cache_folders(built.out) == before_names  # same keys: the entries are replaced in place
    after = manifest_identities(built.out)
    for name, identity in before.items():
        stage = "bench" if name.startswith("rpi5/") else name.split("/")[1].split("-")[0]
        assert (after[name] != identity) == (stage in forced), name
    assert staging_leftovers(built.out) == []


# --- failures leave no half-built entry ------------------------------------------------------------------

def test_failed_export_validation_leaves_no_entry(built):
    before = cache_entries(built.out)
    before_files = manifest_identities(built.out)

    result = build(built.recipe, built.out, "--set", "export.atol=1e-12")

    assert result.exit_code == 1, result.output
    assert "export.atol" in plain(result.output)
    assert "stage failed" in plain(result.output)
    assert cache_entries(built.out) == before  # no export-* entry for the failing key
    assert cache_folders(built.out) == before
    assert staging_leftovers(built.out) == []
    assert manifest_identities(built.out) == before_files  # earlier entries and the bundle are untouched


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX")
def test_ctrl_c_keeps_finished_stages_and_discards_the_running_one(make_recipe, tmp_path):
    recipe = make_recipe({"distill.epochs": 10000, "distill.patience": 10000})
    out = tmp_path / "out"
    cache = out / "cache"
    log_out, log_err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with open(log_out, "w") as stdout, open(log_err, "w") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-m", "edgetune", "build", "--target", "rpi5", "--recipe", str(recipe), "--out", str(out)],
            stdout=stdout, stderr=stderr, cwd=tmp_path,
            # A shell starts background jobs with SIGINT ignored, and Python keeps an ignored SIGINT ignored:
            # give the build the disposition a terminal would.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            deadline = time.monotonic() + 240
            # Interrupt once distill is training (its log line is out), as a user pressing Ctrl-C would.
            while not (list(cache.glob("teacher-*/manifest.json")) and list(cache.glob(".tmp-*distill*"))
                       and "student" in log_err.read_text()):
                assert child.poll() is None, f"build ended before distill started:\n{log_err.read_text()}"
                assert time.monotonic() < deadline, f"distill never started:\n{log_err.read_text()}"
                time.sleep(0.2)
            child.send_signal(signal.SIGINT)
            returncode = child.wait(timeout=120)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()

    assert returncode == 130, log_err.read_text()
    assert "interrupted" in plain(log_err.read_text())
    entries = cache_entries(out)
    assert stages_of(entries) == ["teacher"]  # complete, and the only entry
    assert entries_of(cache_folders(out), "distill") == set()
    assert staging_leftovers(out) == []
    # Rerunning resumes: the teacher is reused, distill is built from scratch.
    prediction = invoke("status", "--out", out, "--target", "rpi5", "--recipe", recipe)
    assert status_predictions(prediction.output)["teacher"] == "cached"
    assert status_predictions(prediction.output)["distill"] == "to build"


def test_build_removes_staging_folders_of_dead_processes_only(built, tmp_path):
    """A SIGKILLed build leaves its temp folder; the next build deletes it unless its process still runs."""
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()  # exited and reaped: its pid names no process
    dead = built.out / "cache" / f".tmp-{finished.pid}-1-distill-0123456789abcdef"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        live = built.out / "cache" / f".tmp-{sleeper.pid}-1-distill-fedcba9876543210"
        for folder in (dead, live):
            (folder / "model").mkdir(parents=True)
            (folder / "model" / "half-written.bin").write_bytes(b"\0" * 100)

        result = build(built.recipe, built.out)

        assert result.exit_code == 0, result.output
        assert not dead.exists()
        assert live.exists()  # another build may still be writing it
    finally:
        sleeper.kill()
        sleeper.wait()
