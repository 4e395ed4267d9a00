"""Budgets are judged only on evidence about the target, and `--fail-on-budget` turns a miss into exit 1."""

from __future__ import annotations

import copy
import json
import re

import pytest
from helpers import build, plain, report_dict

from edgetune import budgets, report_json
from edgetune.targets import Budgets

LIMITS = Budgets(p95_ms=25.0, size_mb=30.0, min_accuracy=0.85)
ESTIMATE = {"kind": "estimate", "p50_ms": 12.0, "p95_ms": 30.0, "at": {"batch_size": 1, "sequence_length": 9,
                                                                       "threads": 4}}


def report(*, on_target: bool, estimate: dict | None = None, p95: float = 1.0, accuracy: float = 0.9,
           size_bytes: int = 1000):
    raw = report_dict(accuracy=accuracy, latency={"p95": p95})
    raw |= {"measured_on_target": on_target, "size_bytes": size_bytes}
    if estimate:
        raw["estimate"] = copy.deepcopy(estimate)
    return report_json.parse(raw, "test")


def test_latency_measured_on_the_target_is_judged_ok_or_over():
    ok = budgets.judge(LIMITS, report(on_target=True, p95=20.0))["p95_ms"]
    assert (ok.value, ok.ok, ok.evidence) == (20.0, True, budgets.MEASURED)
    over = budgets.judge(LIMITS, report(on_target=True, p95=26.0))["p95_ms"]
    assert over.ok is False and budgets.verdict(over) == "over budget"


def test_a_stand_in_host_is_judged_by_the_targets_estimate_labelled_as_such():
    judged = budgets.judge(LIMITS, report(on_target=False, p95=1.0, estimate=ESTIMATE))["p95_ms"]
    # The host's 1.0 ms would pass; the estimate for the target (30 ms) is what counts, and says it is one.
    assert (judged.value, judged.ok, judged.evidence, judged.host_value) == (30.0, False, budgets.ESTIMATE, 1.0)
    line = budgets.describe("p95_ms", judged, "rpi5")
    assert "ESTIMATE 30.0 for rpi5" in line and "not measured on rpi5" in line and "this host measured 1.0" in line
    assert not re.search(r"\bok\b", line)


def test_a_stand_in_host_without_an_estimate_is_not_checked_never_ok():
    judged = budgets.judge(LIMITS, report(on_target=False, p95=1.0))["p95_ms"]
    assert (judged.value, judged.ok, judged.evidence, judged.host_value) == (None, None, budgets.NOT_CHECKED, 1.0)
    line = budgets.describe("p95_ms", judged, "rpi5")
    assert "not checked on the target rpi5" in line and not re.search(r"\bok\b", line)
    assert budgets.misses(report(on_target=False)) == []  # nothing judged, nothing missed


def test_size_and_accuracy_do_not_depend_on_the_host():
    judged = budgets.judge(LIMITS, report(on_target=False, accuracy=0.8, size_bytes=12_345_678))
    assert (judged["size_mb"].value, judged["size_mb"].ok, judged["size_mb"].evidence) == (12.35, True,
                                                                                              budgets.ANY_HOST)
    assert (judged["min_accuracy"].value, judged["min_accuracy"].ok) == (0.8, False)
    assert set(budgets.judge(Budgets(size_mb=5.0), report(on_target=True))) == {"size_mb"}  # only the limits set


def test_misses_name_the_budget_value_limit_and_evidence():
    r = report(on_target=False, estimate=ESTIMATE, accuracy=0.5)
    r.budgets = budgets.judge(LIMITS, r)
    misses = budgets.misses(r)
    assert misses == [
        "budget p95_ms missed: 30.0 is above the limit 25.0 (ESTIMATE for rpi5 by roofline, not measured)",
        "budget min_accuracy missed: 0.5 is below the minimum 0.85 (the same on any host)"]


def test_a_budget_not_checked_round_trips_through_report_json(tmp_path):
    r = report(on_target=False)
    r.budgets = budgets.judge(LIMITS, r)
    report_json.write(r, tmp_path / "report.json")
    raw = json.loads((tmp_path / "report.json").read_text())["budgets"]["p95_ms"]
    assert raw == {"limit": 25.0, "evidence": "not checked on the target", "host_value": 1.0}
    assert report_json.read(tmp_path / "report.json").budgets["p95_ms"].ok is None


# --- the real build on this host -----------------------------------------------------------------------------

def test_the_rpi5_build_here_prints_no_ok_for_latency_it_did_not_measure_on_rpi5(base_build):
    raw = json.loads((base_build.out / "rpi5" / "report.json").read_text())
    if raw["measured_on_target"]:
        pytest.skip("this host matches the rpi5 profile: its latency is the target's")
    lines = [line for line in plain(base_build.result.output).split(" budget ") if line.startswith("p95_ms")]
    assert len(lines) == 1, base_build.result.output
    assert not re.search(r"\bok\b", lines[0]) and ("ESTIMATE" in lines[0] or "not checked" in lines[0])
    md = (base_build.out / "rpi5" / "report.md").read_text()
    p95_row = next(row for row in md.splitlines() if row.startswith("| p95_ms |"))
    assert "✅" not in p95_row and not re.search(r"\bok\b", p95_row)
    if "estimate" in raw:  # the estimate is labelled, beside this host's own measurement
        assert f"p95 ≈ {raw['estimate']['p95_ms']:.2f} ms" in md and "ESTIMATE for rpi5, not measured" in md
        assert f"measured p50 {raw['latency_ms']['p50']:.2f} ms, p95 {raw['latency_ms']['p95']:.2f} ms" in md


def test_fail_on_budget_exits_1_on_an_unmeetable_budget_and_0_without_the_flag(built, tmp_path):
    board = tmp_path / "tiny-board.yaml"
    # rpi5's int8 layout (the defaults, so quantize is reused) and a size no model can meet.
    board.write_text("# A board with no room: 1 kB for the model\narch: aarch64\ncores: 4\n"
                     "budgets: {size_mb: 0.001}\n")
    first = build(built.recipe, built.out, target=str(board))
    assert first.exit_code == 0, first.output  # a miss is reported, not fatal, without the flag
    assert "budget size_mb" in plain(first.output) and "over budget" in plain(first.output)

    result = build(built.recipe, built.out, "--fail-on-budget", target=str(board))
    assert result.exit_code == 1, result.output
    out = plain(result.output)
    size = json.loads((built.out / "tiny-board" / "report.json").read_text())["budgets"]["size_mb"]["value"]
    assert f"budget size_mb missed: {size} is above the limit 0.001 (the same on any host)" in out
    assert "Traceback" not in out
    assert (built.out / "tiny-board" / "report.json").is_file()  # the report and bundle stay


def test_fail_on_budget_passes_when_every_judged_budget_holds(built, tmp_path):
    board = tmp_path / "roomy-board.yaml"
    board.write_text("# A roomy board\narch: aarch64\ncores: 4\nbudgets: {size_mb: 100, min_accuracy: 0.0}\n")
    result = build(built.recipe, built.out, "--fail-on-budget", command="bench", target=str(board))
    assert result.exit_code == 0, result.output
    assert "over budget" not in plain(result.output)
