"""Distillation options on the tiny teacher: hidden-state MSE, transfer text, a pretrained student with its
own tokenizer, and the bad inputs that must stop a build before any training."""

from __future__ import annotations

import json

import pytest
from conftest import make_tiny_teacher
from helpers import CALIBRATION, assert_mentions, build, cache_folders, write_csv


@pytest.fixture(scope="module")
def other_tokenizer_student(tmp_path_factory):
    """A 2-layer model with a smaller vocabulary (so a different tokenizer) and a wider hidden size."""
    return make_tiny_teacher(tmp_path_factory.mktemp("student-48"), layers=2, vocab_size=300, hidden=48)


def distill_metrics(out) -> dict:
    (folder,) = [f for f in (out / "cache").glob("distill-*") if (f / "manifest.json").exists()]
    return json.loads((folder / "manifest.json").read_text())["metrics"]


def test_hidden_state_loss_and_transfer_text_build(make_recipe, tmp_path):
    recipe = make_recipe({"distill.hidden_weight": 1.0, "distill.transfer": str(CALIBRATION), "tune.epochs": 1})
    result = build(recipe, tmp_path / "out", command="distill")
    assert result.exit_code == 0, result.output
    assert_mentions(result.output, "hidden-state MSE", "transfer: 128 unlabeled texts")
    assert distill_metrics(tmp_path / "out")["transfer_texts"] == 128


def test_augmented_copies_join_the_transfer_text(make_recipe, tmp_path):
    recipe = make_recipe({"distill.augment": 2, "distill.transfer": str(CALIBRATION), "distill.epochs": 1})
    result = build(recipe, tmp_path / "out", command="distill")
    assert result.exit_code == 0, result.output
    augmented = int(distill_metrics(tmp_path / "out")["transfer_texts"]) - 128
    assert_mentions(result.output, f"augment: {augmented} perturbed copies")
    assert 360 < augmented <= 2 * 360  # 360 training texts; copies equal to their source are dropped


def test_augmented_texts_are_perturbed_copies_and_repeatable():
    from edgetune.augment import augment_texts

    texts = ["turn off the kitchen lights please", "set a timer for ten minutes", "what is the weather tomorrow"]
    first = augment_texts(texts, 5, "[MASK]", seed=0)
    assert first == augment_texts(texts, 5, "[MASK]", seed=0)
    assert first != augment_texts(texts, 5, "[MASK]", seed=1)
    vocabulary = {w for t in texts for w in t.split()} | {"[MASK]"}
    assert all(set(a.split()) <= vocabulary for a in first)
    assert not set(first) & set(texts)
    assert any("[MASK]" in a for a in first)
    assert 0 < len(first) <= 15


def test_pretrained_student_with_another_tokenizer_distills_on_logits(make_recipe, other_tokenizer_student, tmp_path):
    recipe = make_recipe({"distill.student": str(other_tokenizer_student)})
    result = build(recipe, tmp_path / "out", command="export")
    assert result.exit_code == 0, result.output
    assert_mentions(result.output, "different tokenizer")
    (export,) = (tmp_path / "out" / "cache").glob("export-*")
    vocab = json.loads((export / "tokenizer.json").read_text())["model"]["vocab"]
    assert len(vocab) <= 300  # the student's own tokenizer travels to the export, not the teacher's


def test_hidden_loss_across_tokenizers_is_refused(make_recipe, other_tokenizer_student, tmp_path):
    recipe = make_recipe({"distill.student": str(other_tokenizer_student), "distill.hidden_weight": 1.0,
                          "distill.hidden_layer_map": [0, 2]})
    result = build(recipe, tmp_path / "out", command="distill")
    assert result.exit_code == 2
    assert_mentions(result.output, "teacher's tokenizer")


def test_wider_student_without_projection_fails_before_training(make_recipe, other_tokenizer_student, tmp_path):
    recipe = make_recipe({"distill.student": str(other_tokenizer_student), "distill.hidden_weight": 1.0,
                          "distill.hidden_projection": False})
    result = build(recipe, tmp_path / "out")
    assert result.exit_code == 2
    assert_mentions(result.output, "hidden size 48", "hidden_projection")
    assert cache_folders(tmp_path / "out") == set()


def test_transfer_text_without_text_column_fails_before_training(make_recipe, tmp_path):
    transfer = write_csv(tmp_path / "transfer.csv", "sentence\nturn it up\n")
    recipe = make_recipe({"distill.transfer": str(transfer)})
    result = build(recipe, tmp_path / "out")
    assert result.exit_code == 2
    assert_mentions(result.output, str(transfer), "text")
    assert cache_folders(tmp_path / "out") == set()


def test_students_of_one_teacher_share_its_labels_of_the_augmented_text(make_recipe, tmp_path):
    import numpy as np

    out = tmp_path / "out"
    first = build(make_recipe({"distill.augment": 1, "distill.epochs": 1, "distill.seed": 1}), out, command="distill")
    second = build(make_recipe({"distill.augment": 1, "distill.epochs": 1, "distill.seed": 2}), out, command="distill")
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    (memo,) = (out / "cache").glob("labels-teacher-*.npy")
    assert "reusing" not in first.output and "reusing" in second.output
    assert np.load(memo).shape[1] == 20  # one row of 20 intent logits per augmented text
    assert len(list((out / "cache").glob("distill-*"))) == 2
