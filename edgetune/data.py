"""Labeled text data: CSV splits (text,label), label maps, tokenization, padded batches."""

from __future__ import annotations

import copy
import csv
import random
from dataclasses import dataclass
from pathlib import Path

from edgetune.errors import BadInput
from edgetune.recipe import DataConfig
from edgetune.runtime import file_sha256


@dataclass(frozen=True)
class Split:
    texts: tuple[str, ...]
    labels: tuple[int, ...]


@dataclass(frozen=True)
class OutOfScope:
    """Texts labelled data.out_of_scope_label: kept out of every split, so the stages see only known intents."""
    validation: tuple[str, ...] = ()  # validation's, plus train's (never trained on): for choosing the threshold
    test: tuple[str, ...] = ()


@dataclass(frozen=True)
class Dataset:
    label_names: tuple[str, ...]
    train: Split
    validation: Split
    test: Split
    validation_carved: bool  # True when validation was split off train
    out_of_scope: OutOfScope = OutOfScope()


def read_csv(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows of a UTF-8 CSV that must have `columns`; every problem is a BadInput naming the file."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path}: file not found")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:  # -sig: Excel's "CSV UTF-8" starts with a BOM
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            missing = [c for c in columns if c not in header]
            if missing:
                raise BadInput(
                    f"{path}: missing column(s) {', '.join(missing)}; the header must name "
                    f"{','.join(columns)} (found: {','.join(header) or 'no header'})"
                )
            rows = []
            for line, row in enumerate(reader, start=2):
                if any(row.get(c) is None for c in columns):
                    raise BadInput(f"{path}:{line}: row has fewer fields than the header; fix the quoting")
                rows.append(row)
    except UnicodeDecodeError as err:
        raise BadInput(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8 CSV") from None
    except csv.Error as err:
        raise BadInput(f"{path}: not a valid CSV ({err})") from None
    rows = [r for r in rows if r[columns[0]].strip()]
    if "label" in columns:
        blank = next((i for i, r in enumerate(rows, start=2) if not r["label"].strip()), None)
        if blank is not None:
            raise BadInput(f"{path}: a row (around line {blank}) has text but an empty label; label it or remove it")
    if not rows:
        raise BadInput(f"{path}: no rows with text; add examples under the header {','.join(columns)}")
    return rows


def load_dataset(cfg: DataConfig, seed: int) -> Dataset:
    train_rows, train_oos = _split_out_of_scope(read_csv(Path(cfg.train), ("text", "label")), cfg)
    test_rows, test_oos = _split_out_of_scope(read_csv(Path(cfg.test), ("text", "label")), cfg)
    label_names = tuple(sorted({r["label"].strip() for r in train_rows}))
    if len(label_names) < 2:
        raise BadInput(f"{cfg.train}: needs at least two distinct labels, found {list(label_names)}")
    index = {name: i for i, name in enumerate(label_names)}

    def to_split(rows: list[dict], path: str) -> Split:
        unseen = sorted({r["label"].strip() for r in rows} - set(index))
        if unseen:
            raise BadInput(
                f"{path}: label(s) {', '.join(unseen[:5])} do not occur in {cfg.train}; "
                "add training examples for them or remove those rows"
            )
        return Split(tuple(r["text"].strip() for r in rows), tuple(index[r["label"].strip()] for r in rows))

    train = to_split(train_rows, cfg.train)
    test = to_split(test_rows, cfg.test)
    validation_oos: list[str] = []
    if cfg.validation:
        rows, validation_oos = _split_out_of_scope(read_csv(Path(cfg.validation), ("text", "label")), cfg)
        validation = to_split(rows, cfg.validation)
        carved = False
    else:
        train, validation = _carve(train, cfg.validation_fraction, seed)
        carved = True
    out_of_scope = OutOfScope(tuple(validation_oos + train_oos), tuple(test_oos))
    return Dataset(label_names, train, validation, test, carved, out_of_scope)


def _split_out_of_scope(rows: list[dict], cfg: DataConfig) -> tuple[list[dict], list[str]]:
    """(rows of known intents, texts labelled data.out_of_scope_label); no label is out of scope unless named."""
    if cfg.out_of_scope_label is None:
        return rows, []
    label = cfg.out_of_scope_label.strip()
    return [r for r in rows if r["label"].strip() != label], [r["text"].strip() for r in rows
                                                              if r["label"].strip() == label]


def _carve(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """Stratified hold-out: `fraction` of each label (at least one when it has two or more) goes to validation."""
    rng = random.Random(seed)
    by_label: dict[int, list[int]] = {}
    for i, label in enumerate(split.labels):
        by_label.setdefault(label, []).append(i)
    held: set[int] = set()
    for indices in by_label.values():
        rng.shuffle(indices)
        if len(indices) >= 2:
            held.update(indices[: max(1, round(len(indices) * fraction))])
    keep = [i for i in range(len(split.texts)) if i not in held]
    hold = sorted(held)
    pick = lambda ids: Split(tuple(split.texts[i] for i in ids), tuple(split.labels[i] for i in ids))  # noqa: E731
    return pick(keep), pick(hold)


def read_calibration_texts(path: Path) -> list[str]:
    return [r["text"].strip() for r in read_csv(path, ("text",))]


def file_digest(path: str | Path | None) -> str | None:
    if path is None:
        return None
    try:
        return file_sha256(path)
    except FileNotFoundError:
        raise BadInput(f"{path}: file not found") from None


@dataclass
class Encoded:
    """Token ids of one split, unpadded; batches are padded to their own longest row."""

    input_ids: list[list[int]]
    labels: list[int]

    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.input_ids]


# data.max_length: auto keeps this share of the training texts' tokens; the rest (the long tail) is truncated.
AUTO_TOKEN_COVERAGE = 0.99


def token_counts(tokenizer, texts) -> list[int]:
    """Untruncated token counts (special tokens included) under a transformers or a `tokenizers` tokenizer."""
    if hasattr(tokenizer, "encode_batch"):  # tokenizers.Tokenizer, as the bundle and bench load it
        tokenizer = copy.deepcopy(tokenizer)
        tokenizer.no_truncation()
        tokenizer.no_padding()
        return [len(e.ids) for e in tokenizer.encode_batch(list(texts))]
    return [len(ids) for ids in tokenizer(list(texts), truncation=False)["input_ids"]]


@dataclass(frozen=True)
class LengthChoice:
    tokens: int
    token_share: float  # share of all training tokens within the length
    text_share: float  # share of training texts that fit whole
    auto: bool

    def describe(self) -> str:
        how = "data.max_length auto" if self.auto else "data.max_length"
        return (f"{how}: {self.tokens} tokens (keeps {self.token_share:.1%} of the training tokens; "
                f"{self.text_share:.1%} of training texts fit whole)")


def sequence_length(cfg: DataConfig, tokenizer, train_texts) -> LengthChoice:
    """The truncation length for this tokenizer: the recipe's number, or the auto choice on the training texts."""
    import numpy as np

    counts = np.asarray(token_counts(tokenizer, train_texts))
    if cfg.max_length == "auto":
        tokens = next(length for length in range(8, int(counts.max()) + 8, 8)
                      if np.minimum(counts, length).sum() >= AUTO_TOKEN_COVERAGE * counts.sum())
        limit = getattr(tokenizer, "model_max_length", None)
        if isinstance(limit, int) and 0 < limit < tokens:
            tokens = limit
    else:
        tokens = cfg.max_length
    return LengthChoice(tokens, float(np.minimum(counts, tokens).sum() / counts.sum()),
                        float((counts <= tokens).mean()), cfg.max_length == "auto")


def encode(tokenizer, texts, labels, max_length: int) -> Encoded:
    ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    return Encoded([list(x) for x in ids], list(labels))


def pad_batch(rows: list[list[int]], pad_id: int, *, length: int | None = None):
    """numpy int64 input_ids, attention_mask and token_type_ids padded to `length` or the longest row."""
    import numpy as np

    width = length or max(len(r) for r in rows)
    input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        row = row[:width]
        input_ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}


def length_grouped_batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffle, then sort within windows of 50 batches by length so padding stays small."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 50
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches
