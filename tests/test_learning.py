"""Training learns: the tiny model beats chance by far on a separable toy task, and distillation's loss falls.

These catch what an end-to-end build alone would not: a loss with the wrong sign, labels shuffled against their
texts, a student that never sees the teacher's logits. The thresholds are far from both chance and perfection,
so they hold for any seed and thread count yet fail for a model that did not learn.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from toy_task import CHANCE, LABELS, toy_texts

from edgetune.data import encode
from edgetune.recipe import DistillConfig, TrainingConfig
from edgetune.stages.distill import distillation_loss, student_from_layers
from edgetune.training import cross_entropy, evaluate, input_names_of, predict_logits, train

MIN_ACCURACY = 0.9  # chance is 0.25 on four classes
EPOCHS = 20
FAST = dict(learning_rate=3e-3, batch_size=16, patience=100, freeze_word_embeddings=False)


def toy_sets(tokenizer) -> dict:
    return {split: encode(tokenizer, *toy_texts(n, seed), 16)
            for split, n, seed in (("train", 160, 0), ("validation", 40, 1), ("test", 80, 2))}


@pytest.fixture(scope="module")
def toy_teacher(tiny_teacher):
    """The tiny teacher fine-tuned on the toy task: (model, tokenizer, encoded splits, test accuracy untrained)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_teacher, num_labels=len(LABELS))
    sets = toy_sets(tokenizer)
    names = input_names_of(tokenizer)
    before = evaluate(model, sets["test"], tokenizer.pad_token_id, names, len(LABELS))["accuracy"]
    train(model, sets["train"], sets["validation"], TrainingConfig(epochs=EPOCHS, **FAST), cross_entropy,
          pad_id=tokenizer.pad_token_id, input_names=names, num_labels=len(LABELS), seed=0, desc="toy teacher")
    return model, tokenizer, sets, before


def test_the_tiny_model_learns_a_separable_task_far_above_chance(toy_teacher):
    model, tokenizer, sets, before = toy_teacher
    after = evaluate(model, sets["test"], tokenizer.pad_token_id, input_names_of(tokenizer), len(LABELS))
    assert before < 0.5, f"an untrained head already scores {before:.2f}: the task is not testing learning"
    assert after["accuracy"] >= MIN_ACCURACY, f"test accuracy {after['accuracy']:.3f} (chance {CHANCE:.2f})"


def test_the_distilled_students_loss_falls_and_it_learns_the_teachers_answers(toy_teacher):
    teacher, tokenizer, sets, _ = toy_teacher
    pad, names = tokenizer.pad_token_id, input_names_of(tokenizer)
    soft = predict_logits(teacher, sets["train"], pad, names)
    student = student_from_layers(teacher, (0,))  # the distill stage's init: one of the teacher's three layers
    # alpha = 1: the KD term alone, so a wrong sign or a mismatched teacher row cannot hide behind the labels' CE.
    cfg = dataclasses.replace(DistillConfig(), temperature=2.0, alpha=1.0, epochs=10, **FAST)
    kd = distillation_loss(soft, cfg)
    losses = []

    def recorded(model, batch, labels, ids):
        loss = kd(model, batch, labels, ids)
        losses.append(loss.item())
        return loss

    train(student, sets["train"], sets["validation"], cfg, recorded, pad_id=pad, input_names=names,
          num_labels=len(LABELS), seed=0, desc="toy student")
    per_epoch = -(-len(sets["train"].labels) // cfg.batch_size)
    first, last = np.mean(losses[:per_epoch]), np.mean(losses[-per_epoch:])
    assert 0 <= last < 0.5 * first, f"KD loss went from {first:.3f} (first epoch) to {last:.3f} (last)"
    agreement = np.mean(predict_logits(student, sets["test"], pad, names).argmax(-1)
                        == predict_logits(teacher, sets["test"], pad, names).argmax(-1))
    assert agreement >= MIN_ACCURACY, f"the student agrees with the teacher on {agreement:.1%} of test texts"
