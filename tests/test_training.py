"""The training loop's budget, freezing, accumulation and resume rules, on a tiny in-memory BERT."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from edgetune.data import encode
from edgetune.recipe import TrainingConfig
from edgetune.training import cross_entropy, input_names_of, train

TEXTS = ["turn on the lights", "turn off the lights", "play some jazz", "stop the music", "what time is it",
         "set an alarm for six", "lock the front door", "how warm is it outside"] * 3
LABELS = [0, 0, 1, 1, 2, 2, 3, 3] * 3


def tiny_model_and_sets(tiny_teacher):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_teacher, num_labels=4)
    encoded = encode(tokenizer, TEXTS, LABELS, 16)
    return model, tokenizer, encoded


def run(tiny_teacher, seed: int = 0, **config):
    model, tokenizer, encoded = tiny_model_and_sets(tiny_teacher)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = dataclasses.replace(TrainingConfig(batch_size=4, learning_rate=1e-2, patience=100), **config)
    result = train(model, encoded, encoded, cfg, cross_entropy, pad_id=tokenizer.pad_token_id,
                   input_names=input_names_of(tokenizer), num_labels=4, seed=seed, desc="test")
    return result, before, model.state_dict()


def test_max_steps_stops_mid_epoch_and_validates_what_it_trained(tiny_teacher):
    # 24 texts in batches of 4: 6 steps per epoch; 8 steps end 2 steps into epoch 2.
    result, _, _ = run(tiny_teacher, epochs=5, max_steps=8)
    assert (result.steps, result.epochs_run) == (8, 2)


def test_without_max_steps_the_epochs_decide(tiny_teacher):
    result, _, _ = run(tiny_teacher, epochs=2, max_steps=None)
    assert (result.steps, result.epochs_run) == (12, 2)
    result, _, _ = run(tiny_teacher, epochs=2, max_steps=1000)  # a cap above the epochs' steps changes nothing
    assert (result.steps, result.epochs_run) == (12, 2)


def test_word_embeddings_stay_fixed_unless_asked_to_train(tiny_teacher):
    name = "bert.embeddings.word_embeddings.weight"
    result, before, after = run(tiny_teacher, epochs=1, freeze_word_embeddings=True)
    assert result.best_epoch == 1
    assert torch.equal(before[name], after[name])
    assert not torch.equal(before["bert.encoder.layer.0.attention.self.query.weight"],
                           after["bert.encoder.layer.0.attention.self.query.weight"])
    _, before, after = run(tiny_teacher, epochs=1, freeze_word_embeddings=False)
    assert not torch.equal(before[name], after[name])


def test_cpu_training_repeats_exactly_under_a_seed(tiny_teacher):
    _, _, first = run(tiny_teacher, epochs=2)
    _, _, again = run(tiny_teacher, epochs=2)
    _, _, other = run(tiny_teacher, seed=1, epochs=2)  # another batch order
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_gradient_accumulation_takes_one_optimizer_step_per_group_of_batches(tiny_teacher):
    # 6 batches of 4 an epoch; groups of 4 batches: 2 optimizer steps (4 + the remaining 2), over 2 epochs 4.
    result, before, after = run(tiny_teacher, epochs=2, gradient_accumulation_steps=4)
    assert (result.steps, result.epochs_run) == (4, 2)
    assert not all(torch.equal(before[k], after[k]) for k in before)
    again = run(tiny_teacher, epochs=2, gradient_accumulation_steps=4)[2]
    assert all(torch.equal(after[k], again[k]) for k in after)  # deterministic under the seed, as without it


def test_training_interrupted_by_ctrl_c_resumes_from_the_last_epoch_to_the_same_weights(tiny_teacher, tmp_path,
                                                                                         monkeypatch):
    monkeypatch.setenv("EDGETUNE_CHECKPOINT_SECONDS", "0")
    cfg = TrainingConfig(batch_size=4, learning_rate=1e-2, patience=100, epochs=3, freeze_word_embeddings=True)

    def fit(loss_fn, checkpoints):
        model, tokenizer, encoded = tiny_model_and_sets(tiny_teacher)
        result = train(model, encoded, encoded, cfg, loss_fn, pad_id=tokenizer.pad_token_id,
                       input_names=input_names_of(tokenizer), num_labels=4, seed=0, desc="test",
                       checkpoints=checkpoints)
        return result, model.state_dict()

    calls = 0

    def interrupted(model, batch, labels, ids):  # Ctrl-C two steps into the second epoch (6 steps an epoch)
        nonlocal calls
        calls += 1
        if calls == 9:
            raise KeyboardInterrupt
        return cross_entropy(model, batch, labels, ids)

    with pytest.raises(KeyboardInterrupt):
        fit(interrupted, tmp_path / "resume")
    resumed, weights = fit(cross_entropy, tmp_path / "resume")
    assert resumed.resumed_from == 1 and resumed.steps == 18
    _, uninterrupted = fit(cross_entropy, None)
    assert all(torch.equal(weights[k], uninterrupted[k]) for k in weights)
