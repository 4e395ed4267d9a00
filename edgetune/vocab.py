"""Vocabulary pruning: keep the embedding rows a task's text uses, and rewrite the WordPiece tokenizer to match.

Kept: every token the train and validation texts tokenize to, every special token, and every single-character
piece (`a`, `##a`), so any text still tokenizes without new [UNK]s; optionally the first N ordinary tokens
(export.prune_keep_first: the commonest words in a frequency-ordered BERT vocabulary). Greedy longest-match WordPiece gives the same
pieces on the pruned vocabulary for every word seen in train/validation (each piece it used is kept); an unseen
word whose pieces were dropped falls back to shorter pieces, which is what the test-split match rate measures.

Token ids are renumbered densely in their original order; the rewrite covers tokenizer.json (model.vocab,
added_tokens, post_processor special-token ids, padding), tokenizer_config.json (added_tokens_decoder, *_token_id)
and vocab.txt when present. Embedding rows are selected in the same order and config.vocab_size shrinks.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path

from edgetune.errors import BadInput


def check_wordpiece(tokenizer_json: Path, where: str) -> dict:
    """The parsed tokenizer.json; BadInput unless its model is WordPiece."""
    if not tokenizer_json.is_file():
        raise BadInput(f"{where}: export.prune_vocab needs a fast tokenizer (tokenizer.json), found none in "
                       f"{tokenizer_json.parent}; set export.prune_vocab: false")
    spec = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    kind = (spec.get("model") or {}).get("type")
    if kind != "WordPiece":
        raise BadInput(f"{where}: export.prune_vocab supports WordPiece tokenizers only (BERT-style); this tokenizer's "
                       f"model is {kind}; set export.prune_vocab: false")
    return spec


def check_prunable(model_reference: str, where: str) -> None:
    """Preflight: when the model is a local folder with a tokenizer.json, check it is WordPiece (cheap, no torch)."""
    from edgetune.models import looks_local

    folder = Path(model_reference).expanduser()
    if looks_local(model_reference) and (folder / "tokenizer.json").is_file():
        check_wordpiece(folder / "tokenizer.json", where)


def is_single_character(token: str, prefix: str) -> bool:
    return len(token) == 1 or (token.startswith(prefix) and len(token) == len(prefix) + 1)


def kept_ids(spec: dict, used: Iterable[int], first: int = 0) -> list[int]:
    """Old ids to keep, ascending: those the data uses, special tokens, single-character pieces, and the `first`
    ordinary tokens by id (BERT vocabularies list words by frequency; [unused] and other [..] tokens are skipped)."""
    model = spec["model"]
    prefix = model.get("continuing_subword_prefix", "##")
    keep = set(used)
    keep |= {t["id"] for t in spec.get("added_tokens", [])}
    keep |= {i for token, i in model["vocab"].items() if is_single_character(token, prefix)}
    keep.add(model["vocab"][model["unk_token"]])
    if first:
        ordinary = sorted(i for token, i in model["vocab"].items()
                          if not is_single_character(token, prefix) and not (token.startswith("[") and token.endswith("]")))
        keep |= set(ordinary[:first])
    return sorted(keep)


def _remap_processor(processor: dict | None, mapping: dict[int, int]) -> None:
    if not processor:
        return
    kind = processor.get("type")
    if kind == "Sequence":
        for inner in processor.get("processors", []):
            _remap_processor(inner, mapping)
    elif kind == "TemplateProcessing":
        for special in processor.get("special_tokens", {}).values():
            special["ids"] = [mapping[i] for i in special["ids"]]
    elif kind in ("BertProcessing", "RobertaProcessing"):
        for key in ("sep", "cls"):
            token, old = processor[key]
            processor[key] = [token, mapping[old]]


def rewrite_tokenizer(spec: dict, kept: list[int]) -> dict:
    """tokenizer.json with only `kept` tokens, renumbered 0..len(kept)-1 in their original order."""
    mapping = {old: new for new, old in enumerate(kept)}
    spec = json.loads(json.dumps(spec))  # a deep copy
    spec["model"]["vocab"] = {token: mapping[i] for token, i in sorted(spec["model"]["vocab"].items(), key=lambda kv: kv[1])
                              if i in mapping}
    for token in spec.get("added_tokens", []):
        token["id"] = mapping[token["id"]]
    _remap_processor(spec.get("post_processor"), mapping)
    if spec.get("padding"):
        spec["padding"]["pad_id"] = mapping[spec["padding"]["pad_id"]]
    return spec


def rewrite_tokenizer_config(config: dict, mapping: dict[int, int]) -> dict:
    config = dict(config)
    if "added_tokens_decoder" in config:
        config["added_tokens_decoder"] = {str(mapping[int(i)]): v for i, v in config["added_tokens_decoder"].items()
                                          if int(i) in mapping}
    for key, value in list(config.items()):
        if key.endswith("_token_id") and isinstance(value, int) and value in mapping:
            config[key] = mapping[value]
    return config


def prune_tokenizer_folder(src: Path, dst: Path, kept: list[int]) -> None:
    """Write the pruned tokenizer files of `src` (a save_pretrained folder) into `dst`."""
    dst.mkdir(parents=True, exist_ok=True)
    spec = check_wordpiece(src / "tokenizer.json", str(src))
    mapping = {old: new for new, old in enumerate(kept)}
    pruned = rewrite_tokenizer(spec, kept)
    (dst / "tokenizer.json").write_text(json.dumps(pruned, ensure_ascii=False, indent=2), encoding="utf-8")
    for item in src.iterdir():
        if item.name == "tokenizer_config.json":
            config = json.loads(item.read_text(encoding="utf-8"))
            (dst / item.name).write_text(json.dumps(rewrite_tokenizer_config(config, mapping), indent=2), encoding="utf-8")
        elif item.name == "vocab.txt":
            ordered = sorted(pruned["model"]["vocab"], key=pruned["model"]["vocab"].get)
            (dst / item.name).write_text("".join(f"{t}\n" for t in ordered), encoding="utf-8")
        elif item.is_file() and item.name != "tokenizer.json":
            shutil.copy(item, dst / item.name)


def prune_embeddings(model, kept: list[int]) -> int:
    """Keep only the `kept` rows of the model's input embedding (in order); returns the fp32 bytes removed."""
    import torch

    old = model.get_input_embeddings()
    mapping = {o: n for n, o in enumerate(kept)}
    config = model.config
    pad = getattr(config, "pad_token_id", None)
    new = torch.nn.Embedding(len(kept), old.embedding_dim, padding_idx=mapping.get(pad) if pad is not None else None)
    with torch.no_grad():
        new.weight.copy_(old.weight[torch.tensor(kept, dtype=torch.long)])
    model.set_input_embeddings(new)
    removed = (old.num_embeddings - len(kept)) * old.embedding_dim * 4
    config.vocab_size = len(kept)
    for key in ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id", "unk_token_id"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value in mapping:
            setattr(config, key, mapping[value])
    return removed
