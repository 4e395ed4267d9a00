"""Fixtures: a tiny BERT teacher built in memory, and one real rpi5 build of it shared by the whole session.

The tiny teacher (3 layers, hidden size 32, a WordPiece vocabulary trained on the smart-home train split) makes
every stage of the real pipeline run in seconds on a CPU; tests that change a build work on a copy of the
shared output folder, so only the stages they invalidate run again.
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

# rich sizes its console when edgetune.console is imported: a wide one keeps tables and messages on one line.
os.environ["COLUMNS"] = "250"

import pytest  # noqa: E402

from helpers import SMART_HOME, build, write_recipe  # noqa: E402
# EDGETUNE_REQUIRE: skips of required test groups (SSH, emulation, ...) fail; see required_groups.py.
from required_groups import pytest_configure, pytest_report_header, pytest_runtest_makereport  # noqa: E402, F401

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_tiny_teacher(folder: Path, *, layers: int = 3, vocab_size: int = 400, hidden: int = 32) -> Path:
    """A base BertModel (no classification head: the teacher stage must fine-tune one) and its tokenizer."""
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, BertTokenizerFast

    with open(SMART_HOME / "train.csv", newline="", encoding="utf-8") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS))
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    fast = BertTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                             sep_token="[SEP]", mask_token="[MASK]")
    config = BertConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                        pad_token_id=tokenizer.token_to_id("[PAD]"))
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory) -> Path:
    return make_tiny_teacher(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def base_build(tmp_path_factory, tiny_teacher) -> SimpleNamespace:
    """One full rpi5 build of the tiny recipe: every test that only reads a build shares it."""
    root = tmp_path_factory.mktemp("base-build")
    recipe = write_recipe(root / "recipe.yaml", tiny_teacher)
    out = root / "out"
    result = build(recipe, out)
    assert result.exit_code == 0, result.output
    return SimpleNamespace(recipe=recipe, out=out, result=result, teacher=tiny_teacher)


@pytest.fixture
def built(base_build, tmp_path) -> SimpleNamespace:
    """A private copy of the shared build's output folder, for tests that build more into it."""
    out = tmp_path / "out"
    shutil.copytree(base_build.out, out)
    return SimpleNamespace(recipe=base_build.recipe, out=out, teacher=base_build.teacher)


@pytest.fixture
def make_recipe(tmp_path, tiny_teacher):
    """make_recipe({"distill.epochs": 5}) -> path of a tiny recipe with those dotted keys changed."""

    def make(overrides: dict | None = None, name: str = "recipe.yaml") -> Path:
        return write_recipe(tmp_path / name, tiny_teacher, overrides)

    return make
