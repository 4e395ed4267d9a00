"""Vocabulary pruning (export.prune_vocab): a smaller embedding, the same predictions, a bundle that still works.

The end-to-end tests build the tiny model with pruning on a copy of the shared build (teacher, distill and tune
stay cached); the unit tests rewrite tokenizer specs directly.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
from helpers import SMART_HOME, build, cache_entries, entries_of

from edgetune.errors import BadInput


def texts_of(name: str) -> list[str]:
    with open(SMART_HOME / name, newline="", encoding="utf-8") as handle:
        return [row["text"] for row in csv.DictReader(handle)]


@pytest.fixture(scope="module")
def pruned(base_build, tmp_path_factory):
    import shutil

    out = tmp_path_factory.mktemp("pruned") / "out"
    shutil.copytree(base_build.out, out)
    # The tiny model's predictions are near chance, so a test word split into other pieces flips one now and then:
    # the gate is lowered here, and the tests check exact agreement where the tokenization is unchanged.
    result = build(base_build.recipe, out, "--set", "export.prune_vocab=true", "--set", "export.prune_min_match=0.9")
    assert result.exit_code == 0, result.output
    exports = sorted(entries_of(cache_entries(out), "export"))
    unpruned = out / "cache" / next(n for n in exports if n in cache_entries(base_build.out))
    folder = out / "cache" / next(n for n in exports if n not in cache_entries(base_build.out))
    return out, folder, unpruned, result


def word_embedding_rows(model_path) -> int:
    import onnx

    model = onnx.load(str(model_path))
    tables = [t for t in model.graph.initializer if "word_embeddings" in t.name]
    assert len(tables) == 1
    return tables[0].dims[0]


def test_pruning_shrinks_the_embedding_and_the_config(pruned):
    _, folder, unpruned, _ = pruned
    metrics = json.loads((folder / "manifest.json").read_text())["metrics"]
    kept, original = int(metrics["pruned_vocab_size"]), int(metrics["original_vocab_size"])
    assert kept < original
    assert word_embedding_rows(folder / "model.onnx") == kept
    assert word_embedding_rows(unpruned / "model.onnx") == original
    assert json.loads((folder / "merged" / "config.json").read_text())["vocab_size"] == kept
    assert len(json.loads((folder / "tokenizer.json").read_text())["model"]["vocab"]) == kept
    hidden = json.loads((folder / "merged" / "config.json").read_text())["hidden_size"]
    assert metrics["vocab_bytes_saved"] == (original - kept) * hidden * 4
    assert (folder / "model.onnx").stat().st_size < (unpruned / "model.onnx").stat().st_size


def test_pruned_model_predicts_like_the_unpruned_one_on_test(pruned):
    """Identical predictions wherever pruning leaves a test text's pieces unchanged; the recorded match rate is the
    agreement over the whole test split, measured the way the bundle runs."""
    import numpy as np
    import onnxruntime as ort
    from tokenizers import Tokenizer

    from edgetune import runtime

    _, folder, unpruned, _ = pruned
    texts = texts_of("test.csv")

    def tokenizer_of(where):
        tokenizer = Tokenizer.from_file(str(where / "tokenizer.json"))
        tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]"), pad_token="[PAD]")
        return tokenizer

    def predictions(where):
        tokenizer = tokenizer_of(where)
        session = ort.InferenceSession(str(where / "model.onnx"), providers=["CPUExecutionProvider"])
        return np.concatenate([session.run(None, runtime.encode(texts[i : i + 32], tokenizer, session))[0].argmax(-1)
                               for i in range(0, len(texts), 32)])

    before, after = tokenizer_of(unpruned), tokenizer_of(folder)
    same_pieces = np.array([before.encode(t).tokens == after.encode(t).tokens for t in texts])
    assert same_pieces.mean() > 0.5
    agree = predictions(folder) == predictions(unpruned)
    assert agree[same_pieces].all()
    match = json.loads((folder / "manifest.json").read_text())["metrics"]["prune_match_rate"]
    assert match == pytest.approx(agree.mean()) and match >= 0.9


def test_words_seen_in_training_keep_their_pieces(pruned):
    from tokenizers import Tokenizer

    _, folder, unpruned, _ = pruned
    before, after = (Tokenizer.from_file(str(f / "tokenizer.json")) for f in (unpruned, folder))
    for text in texts_of("train.csv") + texts_of("validation.csv"):
        assert before.encode(text).tokens == after.encode(text).tokens


def test_bundle_tokenizer_matches_transformers_and_predict_py_runs(pruned):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    out, folder, _, _ = pruned
    bundle = out / "rpi5" / "bundle"
    assert (bundle / "tokenizer.json").read_bytes() == (folder / "tokenizer.json").read_bytes()
    fast = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    slow = AutoTokenizer.from_pretrained(folder)
    for text in texts_of("test.csv"):
        assert fast.encode(text).ids == slow(text)["input_ids"]
    preprocess = json.loads((bundle / "preprocess.json").read_text())
    assert preprocess["pad_id"] == fast.token_to_id("[PAD]")
    labels = json.loads((bundle / "labels.json").read_text())
    done = subprocess.run([sys.executable, "predict.py", "turn off the kitchen lights", "zzyzx qwfp"], cwd=bundle,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2 and all(line.split("\t")[0] in labels for line in lines)


def test_pruning_leaves_unpruned_builds_alone(pruned, base_build):
    out, _, _, _ = pruned
    assert cache_entries(base_build.out) <= cache_entries(out)
    assert len(entries_of(cache_entries(out), "export")) == 2


# --- the tokenizer rewrite -------------------------------------------------------------------------------

def spec(kind: str = "WordPiece") -> dict:
    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "the": 4, "lamp": 5, "lam": 6, "##p": 7, "a": 8,
             "##a": 9, "zebra": 10, "[unused0]": 11}
    return {
        "added_tokens": [{"id": i, "content": t, "special": True} for t, i in vocab.items() if t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]")],
        "padding": {"pad_id": 0, "pad_token": "[PAD]"},
        "post_processor": {"type": "Sequence", "processors": [
            {"type": "TemplateProcessing", "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                                                              "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}},
            {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]}]},
        "model": {"type": kind, "unk_token": "[UNK]", "continuing_subword_prefix": "##", "vocab": vocab},
    }


def test_kept_ids_are_used_special_and_single_character_tokens():
    from edgetune import vocab

    assert vocab.kept_ids(spec(), used={4}) == [0, 1, 2, 3, 4, 7, 8, 9]  # the; ##p, a, ##a; not lamp/lam/zebra


def test_single_character_pieces_include_continuations():
    from edgetune import vocab

    assert vocab.is_single_character("a", "##") and vocab.is_single_character("##p", "##")
    assert not vocab.is_single_character("##pa", "##") and not vocab.is_single_character("lam", "##")
    kept = vocab.kept_ids(spec(), used=set())
    assert 7 in kept and 9 in kept and 5 not in kept and 11 not in kept


def test_keep_first_adds_the_first_ordinary_tokens_skipping_bracketed_ones():
    from edgetune import vocab

    assert vocab.kept_ids(spec(), used=set(), first=2) == [0, 1, 2, 3, 4, 5, 7, 8, 9]


def test_rewrite_renumbers_vocab_specials_processors_and_padding():
    from edgetune import vocab

    kept = [0, 1, 2, 3, 5, 8]
    new = vocab.rewrite_tokenizer(spec(), kept)
    assert new["model"]["vocab"] == {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "lamp": 4, "a": 5}
    template, bert = new["post_processor"]["processors"]
    assert template["special_tokens"]["[SEP]"]["ids"] == [3]
    assert bert == {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]}
    assert new["padding"]["pad_id"] == 0


def test_rewrite_moves_special_ids_that_shift():
    from edgetune import vocab

    shifted = spec()
    shifted["model"]["vocab"] = {"the": 0, "[PAD]": 1, "[UNK]": 2, "[CLS]": 3, "[SEP]": 4}
    shifted["added_tokens"] = [{"id": i, "content": t, "special": True} for t, i in shifted["model"]["vocab"].items() if t != "the"]
    shifted["padding"]["pad_id"] = 1
    shifted["post_processor"] = {"type": "TemplateProcessing", "special_tokens": {
        "[CLS]": {"id": "[CLS]", "ids": [3], "tokens": ["[CLS]"]}}}
    new = vocab.rewrite_tokenizer(shifted, [1, 2, 3, 4])
    assert new["padding"]["pad_id"] == 0
    assert new["post_processor"]["special_tokens"]["[CLS]"]["ids"] == [2]
    assert [t["id"] for t in new["added_tokens"]] == [0, 1, 2, 3]
    config = vocab.rewrite_tokenizer_config({"added_tokens_decoder": {"1": {"content": "[PAD]"}, "3": {"content": "[CLS]"}},
                                             "pad_token_id": 1}, {1: 0, 2: 1, 3: 2, 4: 3})
    assert config == {"added_tokens_decoder": {"0": {"content": "[PAD]"}, "2": {"content": "[CLS]"}}, "pad_token_id": 0}


def test_pruned_tokenizer_loads_in_tokenizers_and_tokenizes_known_words_alike():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    from edgetune import vocab

    words = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "the": 4, "lamp": 5, "lam": 6, "##p": 7, "a": 8,
             "l": 9, "##a": 10, "zebra": 11}
    tokenizer = Tokenizer(models.WordPiece(words, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tokenizer.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]"])
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    original = json.loads(tokenizer.to_str())
    pruned_spec = vocab.rewrite_tokenizer(original, vocab.kept_ids(original, used={4, 5}))
    pruned = Tokenizer.from_str(json.dumps(pruned_spec))
    assert pruned.get_vocab_size() == 10  # lam and zebra dropped
    assert pruned.encode("the lamp").tokens == tokenizer.encode("the lamp").tokens == ["[CLS]", "the", "lamp", "[SEP]"]
    assert pruned.encode("the lamp").ids == [2, 4, 5, 3]
    assert tokenizer.encode("zebra").tokens == ["[CLS]", "zebra", "[SEP]"]
    assert pruned.encode("zebra").tokens == ["[CLS]", "[UNK]", "[SEP]"]  # z, e, b, r are not in this toy vocabulary
    assert pruned.encode("lap").tokens == ["[CLS]", "l", "##a", "##p", "[SEP]"]  # unseen word: single characters


def test_non_wordpiece_tokenizer_is_bad_input(tmp_path):
    from edgetune import vocab

    (tmp_path / "tokenizer.json").write_text(json.dumps(spec("BPE")))
    with pytest.raises(BadInput, match="WordPiece tokenizers only.*BPE.*prune_vocab: false"):
        vocab.check_wordpiece(tmp_path / "tokenizer.json", "recipe.yaml: export.prune_vocab")
    with pytest.raises(BadInput, match="WordPiece tokenizers only"):
        vocab.check_prunable(str(tmp_path), "recipe.yaml: export.prune_vocab")
    vocab.check_prunable("sentence-transformers/all-MiniLM-L6-v2", "hub ids are checked at export")  # no error
