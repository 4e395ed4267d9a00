"""data.max_length: auto, training precision and layer freezing, and students cut from a pretrained model."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from conftest import make_tiny_teacher
from helpers import SMART_HOME, assert_mentions, build

from edgetune.data import AUTO_TOKEN_COVERAGE, load_dataset, sequence_length, token_counts
from edgetune.errors import BadInput
from edgetune.recipe import DataConfig, load_recipe
from edgetune.training import autocast, freeze_lower_layers, resolve_precision


@pytest.fixture(scope="module")
def tokenizer(tiny_teacher):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_teacher)


def smart_home(max_length) -> DataConfig:
    return DataConfig(train=str(SMART_HOME / "train.csv"), test=str(SMART_HOME / "test.csv"), max_length=max_length)


def test_auto_length_is_the_shortest_multiple_of_eight_keeping_99_percent_of_tokens(tokenizer):
    texts = load_dataset(smart_home("auto"), 0).train.texts
    counts = token_counts(tokenizer, texts)
    choice = sequence_length(smart_home("auto"), tokenizer, texts)
    kept = lambda n: sum(min(c, n) for c in counts) / sum(counts)  # noqa: E731
    assert choice.auto and choice.tokens % 8 == 0
    assert kept(choice.tokens) >= AUTO_TOKEN_COVERAGE > kept(choice.tokens - 8)
    assert choice.token_share == pytest.approx(kept(choice.tokens))
    assert "data.max_length auto" in choice.describe()


def test_long_texts_raise_the_auto_length_and_a_fixed_length_is_kept(tokenizer):
    texts = ["turn on the lights"] * 50 + [" ".join(["word"] * 60)] * 50
    assert sequence_length(smart_home("auto"), tokenizer, texts).tokens >= 56
    fixed = sequence_length(smart_home(16), tokenizer, texts)
    assert fixed.tokens == 16 and not fixed.auto and fixed.text_share == pytest.approx(0.5)


def test_the_bundle_tokenizer_counts_as_transformers_does(base_build, tokenizer):
    from tokenizers import Tokenizer

    (bundle_tokenizer,) = (base_build.out / "rpi5" / "bundle").glob("tokenizer.json")
    fast = Tokenizer.from_file(str(bundle_tokenizer))  # truncation is configured in it: counting must ignore it
    texts = ["turn on the lights " * 20, "stop"]
    assert token_counts(fast, texts) == token_counts(tokenizer, texts)


@pytest.mark.parametrize("value, ok", [("auto", True), (24, True), ("long", False), (1, False)])
def test_max_length_takes_a_number_or_auto(make_recipe, value, ok):
    recipe = make_recipe({"data.max_length": value})
    if ok:
        assert load_recipe(recipe).data.max_length == value
    else:
        with pytest.raises(BadInput, match="data.max_length"):
            load_recipe(recipe)


def test_student_layers_without_a_pretrained_student_is_refused(make_recipe):
    with pytest.raises(BadInput, match="distill.student_layers needs distill.student"):
        load_recipe(make_recipe({"distill.student_layers": [0]}))


def test_negative_freeze_layers_is_refused(make_recipe):
    with pytest.raises(BadInput, match="teacher.freeze_layers"):
        load_recipe(make_recipe({"teacher.freeze_layers": -1}))


def test_freezing_lower_layers_stops_their_gradients_only(tiny_teacher):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_teacher, num_labels=3)
    freeze_lower_layers(model, 1)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert any(".embeddings." in n for n in frozen) and any(".layer.0." in n for n in frozen)
    assert not any(".layer.1." in n or "classifier" in n for n in frozen)


def test_precision_auto_follows_the_hardware_and_bf16_autocast_runs_on_cpu(monkeypatch):
    from edgetune import training

    cpu = torch.device("cpu")
    monkeypatch.setattr(training, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", cpu) == "bf16"
    monkeypatch.setattr(training, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    with autocast(cpu, "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with autocast(cpu, "fp32"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_student_cut_from_a_pretrained_model_keeps_the_chosen_layers(make_recipe, tmp_path_factory, tmp_path):
    four_layers = make_tiny_teacher(tmp_path_factory.mktemp("student-4"), layers=4)
    recipe = make_recipe({"distill.student": str(four_layers), "distill.student_layers": [0, 3], "distill.seed": 7})
    result = build(recipe, tmp_path / "out", command="distill")
    assert result.exit_code == 0, result.output
    assert_mentions(result.output, "its layers [0, 3]")
    (folder,) = (tmp_path / "out" / "cache").glob("distill-*")
    assert json.loads((folder / "model" / "config.json").read_text())["num_hidden_layers"] == 2
    logits = __import__("numpy").load(folder / "test_logits.npy")
    assert logits.shape == (len(load_dataset(smart_home(32), 0).test.texts), 20)


def test_a_student_seed_changes_the_student_not_the_teacher(make_recipe, tmp_path):
    out = tmp_path / "out"
    for seed in (1, 2):
        assert build(make_recipe({"distill.seed": seed}), out, command="distill").exit_code == 0
    assert len(list((out / "cache").glob("teacher-*"))) == 1
    assert len(list((out / "cache").glob("distill-*"))) == 2
