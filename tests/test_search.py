"""Budget-driven student search: candidates share the cached teacher, the shipped one fits the budgets, and a budget
nothing meets fails naming the closest candidate."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import pytest

from edgetune import search
from edgetune.errors import BadInput, StageFailed
from edgetune.report_json import SearchCandidate
from edgetune.search_report import pareto
from edgetune.targets import load_target
from helpers import ANSI, REPO, assert_mentions, build, cache_entries, entries_of, plain
from test_remote import pytestmark as needs_sshd
from test_remote import sshd  # noqa: F401 -- the throwaway sshd fixture, for the remote-target search


def ssh_marks(test):
    """test_remote.py's marks (skip without OpenSSH, the ssh test group, its timeout) on one test here."""
    for mark in needs_sshd:
        test = mark(test)
    return test


SEARCH = {"depths": [1, 2], "methods": ["int8-dynamic", "int4"]}


@pytest.fixture(scope="module")
def searched(base_build, tmp_path_factory) -> SimpleNamespace:
    """The shared build's output with a searched rpi5 build on top: 2 depths x 2 methods."""
    out = tmp_path_factory.mktemp("searched") / "out"
    shutil.copytree(base_build.out, out)
    result = build(base_build.recipe, out, "--set", f"search={json.dumps(SEARCH)}")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "rpi5" / "report.json").read_text())
    return SimpleNamespace(out=out, result=result, report=report, search=report["search"], recipe=base_build.recipe)


def test_every_candidate_is_tried_and_the_teacher_is_built_once(searched):
    names = [c["name"] for c in searched.search["candidates"]]
    assert names == ["1L [0] int8-dynamic", "1L [0] int4", "2L [0, 2] int8-dynamic", "2L [0, 2] int4"]
    entries = cache_entries(searched.out)
    assert len(entries_of(entries, "teacher")) == 1
    assert len(entries_of(entries, "distill")) == 2 and len(entries_of(entries, "quantize")) == 4
    # The recipe's own student ([0, 2], int8-dynamic) came from the shared build's cache.
    assert next(c for c in searched.search["candidates"] if c["name"] == "2L [0, 2] int8-dynamic")["reused"]


def test_the_shipped_candidate_is_the_most_accurate_within_the_budgets(searched):
    s, target = searched.search, load_target("rpi5")
    fits = [c for c in s["candidates"] if c["within_budgets"]]
    assert fits and s["chosen"] == max(fits, key=lambda c: c["validation_accuracy"])["name"]
    for c in s["candidates"]:
        assert c["within_budgets"] == (c["p95_ms"] <= target.budgets.p95_ms and c["size_bytes"] / 1e6 <= 30)
    chosen = next(c for c in s["candidates"] if c["name"] == s["chosen"])
    assert searched.report["quantization"] == chosen["method"]
    assert searched.report["student"]["layers"] == len(chosen["layers"])
    assert "most accurate on validation" in s["reason"]


def test_p95_on_rpi5_is_the_labelled_roofline_estimate_not_this_hosts(searched):
    s = searched.search
    assert s["latency_source"] == "estimate" and s["latency_note"].startswith("ESTIMATE, not measured")
    # The Cortex-A76 estimate is not this host's timing presented as the target's.
    assert all(c["p95_ms"] != c["host_p95_ms"] for c in s["candidates"])
    assert_mentions(searched.result.output, "ESTIMATE, not measured")


def test_report_shows_every_candidate_in_a_table_and_on_the_pareto_plot(searched):
    md = (searched.out / "rpi5" / "report.md").read_text()
    assert "## Student search" in md and "p95 ms on target (ESTIMATE)" in md and "![student search](search_pareto.png)" in md
    for c in searched.search["candidates"]:
        assert c["name"] in md
    assert f"| **{searched.search['chosen']}** |" in md
    assert (searched.out / "rpi5" / "search_pareto.png").stat().st_size > 10_000


def test_a_budget_nothing_meets_exits_1_naming_the_closest_candidate(searched, tmp_path):
    board = tmp_path / "tight.yaml"
    rpi5 = (REPO / "targets" / "rpi5.yaml").read_text().replace("p95_ms: 25", "p95_ms: 0.0001")
    board.write_text(rpi5)
    result = build(searched.recipe, searched.out, "--set", f"search={json.dumps(SEARCH)}", target=str(board))
    assert result.exit_code == 1, result.output
    p95 = printed_p95(result.output)  # this run's own timing, from the candidate table the build printed
    assert set(p95) == {c["name"] for c in searched.search["candidates"]}
    assert "no candidate meets tight's budgets" in plain(result.output)
    assert_mentions(result.output, f"the closest is {min(p95, key=p95.get)}")  # only p95 is over: the fastest


def printed_p95(output: str) -> dict[str, float]:
    """{candidate: p95 ms} from the search's candidate table in a build's output."""
    rows = [[c.strip() for c in line.split("│")] for line in ANSI.sub("", output).splitlines() if "│" in line]
    return {r[1]: float(r[5]) for r in rows if len(r) > 7 and r[1].split("L ")[0].isdigit()}


def test_choose_names_the_closest_by_its_worst_budget():
    rows = [SearchCandidate(name, [0], "int4", acc, acc, int(mb * 1e6), p95, p95, False)
            for name, acc, mb, p95 in (("small-slow", 0.9, 10, 60.0), ("big-fast", 0.8, 45, 20.0))]
    target = load_target("rpi5")  # p95 <= 25 ms, size <= 30 MB
    for r in rows:
        r.over_budget = search.over_budget(r, target)
    with pytest.raises(StageFailed) as err:
        search.choose(rows, target, "estimate")
    assert "the closest is big-fast (size 45.0 MB > 30 MB" in str(err.value)  # 1.5x over beats 2.4x over


def test_choose_says_when_a_more_accurate_candidate_was_over_budget():
    rows = [SearchCandidate("fits", [0], "int4", 0.8, 0.8, 10_000_000, 10.0, 5.0, True),
            SearchCandidate("slow", [0, 1], "int4", 0.9, 0.9, 10_000_000, 40.0, 9.0, False, ["p95 40.00 ms > 25 ms"])]
    chosen, reason = search.choose(rows, load_target("rpi5"), "estimate")
    assert chosen.name == "fits" and "slow scored higher (0.9000) but is over budget (p95 40.00 ms > 25 ms)" in reason


def test_depths_spread_over_the_teacher_and_keep_the_recipes_own_student():
    assert search.layers_for(1, 6, (0, 5), "r") == (0,)
    assert search.layers_for(2, 6, (0, 5), "r") == (0, 5)
    assert search.layers_for(3, 6, (0, 5), "r") == (0, 2, 5)  # round(2.5) is 2
    assert search.layers_for(2, 6, (1, 4), "r") == (1, 4)
    with pytest.raises(BadInput, match="search.depths has 7, but the teacher has 6 layers"):
        search.layers_for(7, 6, (0, 5), "r")


def test_pareto_front_drops_candidates_beaten_on_every_axis():
    def row(name, acc, mb, p95):
        return SearchCandidate(name, [0], "int8", acc, acc, int(mb * 1e6), p95, p95, True)

    rows = [row("a", 0.9, 15, 2.0), row("b", 0.85, 8, 1.5), row("c", 0.84, 16, 2.5), row("d", 0.91, 20, 3.0)]
    assert pareto(rows) == {"a", "b", "d"}


@pytest.mark.parametrize("value, message", [
    ("{depths: [0, 2]}", "search.depths [0, 2] must list distinct student depths >= 1"),
    ("{depths: [2, 2]}", "search.depths [2, 2] must list distinct"),
    ("{methods: [int9]}", "search.methods ['int9'] must list distinct registered methods"),
    ("{deepths: [1]}", "unknown key 'search.deepths'; did you mean 'depths'?"),
])
def test_a_bad_search_section_is_bad_input_naming_the_key(make_recipe, tmp_path, value, message):
    result = build(make_recipe(), tmp_path / "out", "--set", f"search={value}")
    assert result.exit_code == 2, result.output
    assert message in plain(result.output)
    assert not (tmp_path / "out" / "cache").exists()  # rejected before any stage ran


def test_search_auto_takes_the_default_depths_and_every_quantizing_method(make_recipe):
    from edgetune.recipe import load_recipe

    recipe = load_recipe(make_recipe(), overrides=("search=auto",))
    assert recipe.search.depths == (1, 2, 3)
    assert search.methods(recipe) == ("int8-dynamic", "int8-static", "int4")
    assert load_recipe(make_recipe()).search is None


def test_search_needs_a_student_cut_from_the_teacher(make_recipe, tmp_path):
    result = build(make_recipe({"distill.student": str(tmp_path)}), tmp_path / "out", "--set", "search=auto")
    assert result.exit_code == 2 and "distill.student" in plain(result.output)


def test_force_rebuilds_each_candidate_entry_once(searched, tmp_path):
    from helpers import manifest_identities

    out = tmp_path / "out"
    shutil.copytree(searched.out, out)
    before = manifest_identities(out)
    result = build(searched.recipe, out, "--set", f"search={json.dumps(SEARCH)}", "--force", "quantize")
    assert result.exit_code == 0, result.output
    after = manifest_identities(out)
    changed = {path.removeprefix("cache/").split("-")[0].split("/")[0] for path in after if after[path] != before.get(path)}
    assert changed == {"quantize", "rpi5"}  # every quantize entry (and the bundle), nothing upstream
    assert len(entries_of(cache_entries(out), "quantize")) == 4
    assert result.output.count("quantize: graph fusions") == 4  # each entry rebuilt once, not once per run


@ssh_marks
def test_a_target_with_a_remote_takes_each_candidates_p95_from_the_device(searched, sshd, tmp_path):
    """Over the throwaway sshd on 127.0.0.1 of tests/test_remote.py: the device is this machine."""
    remote, root = sshd
    board = tmp_path / "pi-on-desk.yaml"
    board.write_text((REPO / "targets" / "rpi5.yaml").read_text() + "remote:\n" + "".join(
        f"  {k}: {v}\n" for k, v in {"host": remote.host, "port": remote.port, "user": remote.user,
                                    "identity_file": remote.identity_file, "known_hosts": remote.known_hosts,
                                    "python": remote.python, "dir": remote.dir}.items()))
    out = tmp_path / "out"
    shutil.copytree(searched.out, out)
    calls_before = len((root / "device-calls.log").read_text().split()) if (root / "device-calls.log").exists() else 0
    result = build(searched.recipe, out, "--set", f"search={json.dumps(SEARCH)}", target=str(board))
    assert result.exit_code == 0, result.output
    s = json.loads((out / "pi-on-desk" / "report.json").read_text())["search"]
    assert s["latency_source"] == "device" and "over SSH" in s["latency_note"]
    calls = (root / "device-calls.log").read_text().split()[calls_before:]
    assert calls.count("-") >= 2 * 5  # probe + bench on the device for each of 4 candidates and the shipped model
    assert "ESTIMATE" not in (out / "pi-on-desk" / "report.md").read_text().split("## Student search")[1]
