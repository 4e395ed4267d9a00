"""The other commands: targets, status, the per-stage commands, bench, --version, user targets by path."""

from __future__ import annotations

import json

import pytest

from edgetune.pipeline import STAGE_NAMES
from helpers import (
    BUILTIN_TARGETS,
    build,
    cache_entries,
    cache_folders,
    expected,
    invoke,
    manifest_identities,
    plain,
    predicted,
    stage_statuses,
    staging_leftovers,
    status_predictions,
)


def test_help_lists_every_stage_command():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("build", "targets", "status", *STAGE_NAMES):
        assert command in result.output


def test_version():
    from importlib.metadata import version

    result = invoke("--version")
    assert result.exit_code == 0
    assert version("edgetune") in result.output


def test_targets_lists_the_five_builtin_targets():
    result = invoke("targets")
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in plain_lines(result.output) if line.count("│") >= 6}
    assert sorted(set(rows) & set(BUILTIN_TARGETS)) == BUILTIN_TARGETS
    assert "aarch64" in rows["rpi5"] and "25.0 ms" in rows["rpi5"]
    assert "CUDAExecutionProvider" in rows["cuda"]


def plain_lines(text: str) -> list[str]:
    return [plain(line) for line in text.splitlines()]


def test_status_lists_every_cache_entry_and_the_built_report(base_build):
    result = invoke("status", "--out", base_build.out)
    assert result.exit_code == 0, result.output
    output = plain(result.output)
    for name in cache_entries(base_build.out):
        stage, key = name.split("-", 1)
        assert any(stage in line and key in line for line in plain_lines(result.output)), name
    report = json.loads((base_build.out / "rpi5" / "report.json").read_text())
    assert f"built rpi5: p95 {report['latency_ms']['p95']:.2f} ms" in output


def test_status_for_another_target_predicts_what_it_reuses(base_build):
    result = invoke("status", "--out", base_build.out, "--target", "x86-avx2", "--recipe", base_build.recipe)
    assert result.exit_code == 0, result.output
    assert status_predictions(result.output) == predicted(to_build=("quantize",))


def test_status_with_unknown_target_exits_2(base_build):
    result = invoke("status", "--out", base_build.out, "--target", "no-such-board")
    assert result.exit_code == 2
    assert "no-such-board" in plain(result.output)


def test_force_with_unknown_stage_is_a_usage_error(base_build, tmp_path):
    result = invoke("build", "--target", "rpi5", "--recipe", base_build.recipe, "--out", tmp_path / "out",
                    "--force", "nonsense")
    assert result.exit_code == 2
    assert "nonsense" in result.output
    assert not (tmp_path / "out").exists()


def test_build_without_target_is_a_usage_error(tmp_path):
    result = invoke("build", "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert "--target" in result.output


def test_stage_command_builds_only_up_to_that_stage(built):
    before = cache_entries(built.out)
    report = (built.out / "rpi5" / "report.json").read_bytes()
    result = build(built.recipe, built.out, "--set", "distill.temperature=2.0", command="distill")
    assert result.exit_code == 0, result.output
    assert stage_statuses(result.output) == expected(built=("distill",), until="distill")
    assert sorted(name.split("-")[0] for name in cache_entries(built.out) - before) == ["distill"]
    assert (built.out / "rpi5" / "report.json").read_bytes() == report  # no bench: the report is untouched


def test_stage_command_on_a_finished_build_reuses_everything(built):
    before = manifest_identities(built.out)
    result = build(built.recipe, built.out, command="export")
    assert result.exit_code == 0, result.output
    assert stage_statuses(result.output) == expected(until="export")
    assert manifest_identities(built.out) == before


def test_bench_command_measures_again_without_rebuilding(built):
    before_entries = cache_folders(built.out)
    before = manifest_identities(built.out)
    result = build(built.recipe, built.out, command="bench")
    assert result.exit_code == 0, result.output
    assert stage_statuses(result.output) == expected()
    assert cache_folders(built.out) == before_entries
    after = manifest_identities(built.out)
    assert {k for k in before if after[k] != before[k]} == {"rpi5/bundle/manifest.json"}


def test_changed_bench_settings_measure_again_in_a_build(built):
    before = manifest_identities(built.out)
    result = build(built.recipe, built.out, "--set", "bench.warmup_runs=3")
    assert result.exit_code == 0, result.output
    assert stage_statuses(result.output) == expected()
    after = manifest_identities(built.out)
    assert {k for k in before if after[k] != before[k]} == {"rpi5/bundle/manifest.json"}


def test_bench_max_runs_caps_the_number_of_timed_runs(built):
    # No early stop on the interval and time to spare: only max_runs ends the measurement.
    result = build(built.recipe, built.out, "--set", "bench.max_runs=120", "--set", "bench.ci_relative_halfwidth=0",
                   "--set", "bench.max_seconds=600")
    assert result.exit_code == 0, result.output
    latency = json.loads((built.out / "rpi5" / "report.json").read_text())["latency_ms"]
    assert latency["runs"] <= 120, latency["stopped_because"]


def test_user_target_by_path_builds_and_reuses_a_matching_quantization(built, tmp_path):
    board = tmp_path / "boards" / "my-board.yaml"
    board.parent.mkdir()
    # rpi5's int8 layout (the defaults): only the measurement is new.
    board.write_text("# My board: an x86 mini PC\narch: x86_64\ncores: 2\nbudgets: {p95_ms: 40, size_mb: 5}\n")
    before = cache_folders(built.out)

    result = build(built.recipe, built.out, target=str(board))

    assert result.exit_code == 0, result.output
    assert stage_statuses(result.output) == expected()
    assert cache_folders(built.out) == before
    report = json.loads((built.out / "my-board" / "report.json").read_text())
    assert report["target"] == "my-board"
    assert set(report["budgets"]) == {"p95_ms", "size_mb"}
    assert report["budgets"]["size_mb"]["limit"] == 5


def test_cuda_target_fails_at_bench_when_this_host_has_no_cuda_provider(built):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this host's onnxruntime has the CUDA provider")
    before = cache_entries(built.out)
    result = build(built.recipe, built.out, target="cuda")
    assert result.exit_code == 1, result.output
    assert "CUDAExecutionProvider" in plain(result.output)
    assert not (built.out / "cuda").exists()
    assert staging_leftovers(built.out) == []
    # cuda's symmetric int8 preset makes its own quantized model; that finished stage stays cached.
    added = cache_entries(built.out) - before
    assert sorted(n.split("-")[0] for n in added) == ["quantize"]


def test_status_for_a_recipe_with_a_missing_data_file_is_bad_input(base_build, tmp_path):
    missing = tmp_path / "no-such-train.csv"
    result = invoke("status", "--out", base_build.out, "--target", "rpi5", "--recipe", base_build.recipe,
                    "--set", f"data.train={missing}")
    assert result.exit_code == 2, result.output
    assert str(missing) in plain(result.output)
