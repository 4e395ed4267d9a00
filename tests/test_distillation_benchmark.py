"""benchmarks/distillation/run.py: rows trained in different runs land in one section and are still compared text by
text with their hard-label row (per-text correctness survives the JSON)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

RUN = Path(__file__).resolve().parents[1] / "benchmarks" / "distillation" / "run.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("distillation_run", RUN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def row(condition, layers, correct_per_seed):
    seeds = np.asarray(correct_per_seed, dtype=float)
    return {"condition": condition, "layers": layers, "accuracy": float(seeds.mean()),
            "accuracy_seeds": seeds.mean(1).tolist(), "correct": seeds.mean(0).tolist()}


def section(students, teacher_correct):
    return {"dataset": "d", "settings": {"max_steps": 10, "seeds": [0, 1]}, "students": students,
            "teachers": [{"model": "all-MiniLM-L6-v2", "correct": list(teacher_correct)}]}


def test_a_later_kd_row_is_compared_with_a_hard_row_read_back_from_json(bench):
    rng = np.random.default_rng(0)
    hard = rng.integers(0, 2, (2, 400))
    first = bench.merge(None, section([row("hard labels", 3, hard)], np.ones(400)))
    on_disk = {**first, "students": [bench.stored(s) for s in first["students"]],
               "teachers": [bench.stored(t) for t in first["teachers"]]}
    assert set(on_disk["students"][0]["correct_counts"]) <= {"0", "1", "2"}

    kd = np.maximum(hard, rng.integers(0, 2, (2, 400)))  # right wherever hard labels were, and more
    merged = bench.merge(on_disk, section([row("KD from MPNet", 3, kd)], np.ones(400)))

    assert [(s["condition"], s["layers"]) for s in merged["students"]] == [("hard labels", 3), ("KD from MPNet", 3)]
    gain = merged["students"][1]["vs_hard_labels"]
    assert gain["gain"] == pytest.approx(kd.mean() - hard.mean())
    assert gain["ci"][0] > 0 and gain["only_b_right"] == 0


def test_a_rerun_row_replaces_its_namesake_and_keeps_the_others(bench):
    ones, zeros = np.ones((1, 50)), np.zeros((1, 50))
    earlier = bench.merge(None, section([row("hard labels", 2, zeros), row("KD from MiniLM-L6", 2, zeros)], zeros[0]))
    merged = bench.merge(earlier, section([row("hard labels", 2, ones)], zeros[0]))
    assert [s["accuracy"] for s in merged["students"]] == [1.0, 0.0]
    assert merged["students"][1]["vs_hard_labels"]["gain"] == -1.0


def test_a_six_layer_row_is_compared_with_the_minilm_teacher(bench):
    student = row("KD from MPNet", 6, np.ones((1, 30)))
    merged = bench.merge(None, section([student], np.zeros(30)))
    assert merged["students"][0]["vs_hard_labels"]["against"] == "teacher all-MiniLM-L6-v2"
    assert merged["students"][0]["vs_hard_labels"]["gain"] == 1.0


def test_merge_cache_links_finished_stages_only(bench, tmp_path):
    other = tmp_path / "other" / "cache"
    (other / "teacher-abc").mkdir(parents=True)
    (other / "teacher-abc" / "manifest.json").write_text("{}")
    (other / "distill-unfinished").mkdir()
    (other / ".tmp-1-distill-x").mkdir()
    (other / "labels-teacher-abc-1.npy").write_bytes(b"x")
    bench.link_cache(tmp_path / "out", [tmp_path / "other"])
    assert sorted(p.name for p in (tmp_path / "out" / "cache").iterdir()) == ["labels-teacher-abc-1.npy", "teacher-abc"]


def test_teachers_not_built_in_this_run_keep_their_earlier_rows(bench):
    earlier = bench.merge(None, {**section([row("hard labels", 3, np.ones((1, 20)))], np.ones(20)),
                                 "teacher_ensemble": {"accuracy": 0.5}})
    earlier["teachers"].append({"model": "all-mpnet-base-v2", "accuracy": 0.9})
    now = {"dataset": "d", "settings": {"max_steps": 10, "seeds": [0]}, "teachers": [],
           "students": [row("hard labels, max_length 32", 3, np.zeros((1, 20)))]}
    merged = bench.merge(earlier, now)
    assert [t["model"] for t in merged["teachers"]] == ["all-MiniLM-L6-v2", "all-mpnet-base-v2"]
    assert merged["teacher_ensemble"] == {"accuracy": 0.5}
    assert len(merged["students"]) == 2
