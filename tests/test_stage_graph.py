"""The stage graph is what runs: a stage gets only its declared upstream folders, `edgetune STAGE` builds its
ancestors only, and `--force STAGE` rebuilds it and its descendants only."""

from __future__ import annotations

import pytest

from edgetune import pipeline
from helpers import build, cache_entries, manifest_identities, stage_statuses


def test_ancestors_and_descendants_follow_the_declared_upstream():
    assert pipeline.ancestors("baseline") == ("teacher", "baseline")
    assert pipeline.ancestors("quantize") == ("teacher", "distill", "tune", "export", "quantize")
    assert pipeline.descendants("quantize") == ("quantize", "bench")
    assert pipeline.descendants("teacher") == pipeline.STAGE_NAMES
    for s in pipeline.STAGES:  # the table lists every stage after what it reads: the run order is the table's
        assert all(pipeline.STAGE_NAMES.index(u) < pipeline.STAGE_NAMES.index(s.name) for u in s.upstream)


def test_a_stage_cannot_read_an_undeclared_folder(tmp_path):
    folders = {name: tmp_path / name for name in pipeline.STAGE_NAMES}
    inputs = pipeline.StageInputs("quantize", folders)
    assert dict(inputs) == {"export": tmp_path / "export"}
    with pytest.raises(KeyError, match="stage quantize read the distill folder, which it does not declare"):
        inputs["distill"]


def test_baseline_on_a_clean_cache_builds_teacher_and_baseline_only(make_recipe, tmp_path):
    out = tmp_path / "out"
    result = build(make_recipe(), out, command="baseline")
    assert result.exit_code == 0, result.output
    assert stage_statuses(result.output) == {"teacher": "built", "baseline": "built"}
    assert sorted(name.split("-")[0] for name in cache_entries(out)) == ["baseline", "teacher"]


def test_force_quantize_rebuilds_quantize_and_bench_and_nothing_else(built):
    before = manifest_identities(built.out)
    result = build(built.recipe, built.out, "--force", "quantize")
    assert result.exit_code == 0, result.output
    statuses = stage_statuses(result.output)
    assert {s for s, status in statuses.items() if status in ("built", "measured")} == {"quantize", "bench"}
    after = manifest_identities(built.out)
    rewritten = {name.split("/")[0] if name.startswith("rpi5/") else name.split("/")[1].split("-")[0]
                 for name, identity in before.items() if after[name] != identity}
    assert rewritten == {"quantize", "rpi5"}  # rpi5/: the bundle bench wrote


def test_force_of_a_stage_the_command_does_not_run_is_bad_input(built):
    result = build(built.recipe, built.out, "--force", "quantize", command="baseline")
    assert result.exit_code == 2
    assert "does not run quantize" in result.output
