"""Labeled text data: splits from files or a Hugging Face dataset (edgetune/readers.py reads them), label maps,
tokenization, padded batches."""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from pathlib import Path

from edgetune.errors import BadInput
from edgetune.readers import SPLITS, Table, read_table
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


def read_rows(path: str | Path, columns: tuple[str, ...], keys: tuple[str, ...] = ()) -> list[dict[str, str]]:
    """Rows of a .csv, .jsonl or .parquet file that must have `columns` (named by the recipe `keys`, if any)."""
    return table_rows(read_table(path), columns, keys)


def table_rows(table: Table, columns: tuple[str, ...], keys: tuple[str, ...] = ()) -> list[dict[str, str]]:
    """The `columns` of each row as text; rows without text are dropped, a text without a label is an error."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        named = [k for c, k in zip(columns, keys) if c in missing]
        fix = (f"set {' and '.join(named)} to the column(s) holding them" if named
               else f"the header must name {','.join(columns)}")
        raise BadInput(f"{table.source}: missing column(s) {', '.join(missing)}; {fix} "
                       f"(found: {','.join(table.columns) or 'no header'})")
    rows = []
    for number, row in enumerate(table.rows, start=1):
        cells = {c: _cell(row.get(c)) for c in columns}
        if not cells[columns[0]].strip():
            continue
        if len(columns) > 1 and not cells[columns[1]].strip():
            raise BadInput(f"{table.source}: data row {number} has text but an empty {columns[1]!r}; "
                           "label it or remove it")
        rows.append(cells)
    if not rows:
        raise BadInput(f"{table.source}: no rows with text; add examples with the column(s) {','.join(columns)}")
    return rows


def _cell(value) -> str:
    """A cell as text: JSON and Parquet hold numbers and nulls where CSV holds strings."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a label column of 1.0, 2.0 (pandas writes int labels with nulls as floats)
    return value if isinstance(value, str) else str(value)


def _split_table(cfg: DataConfig, split: str) -> Table | None:
    if cfg.dataset:
        from edgetune.readers import hub_splits, hub_table

        present = split in hub_splits(cfg.dataset, cfg.dataset_config)
        return hub_table(cfg.dataset, cfg.dataset_config, split) if present or split != "validation" else None
    path = getattr(cfg, split)
    return read_table(path) if path else None


def load_dataset(cfg: DataConfig, seed: int) -> Dataset:
    columns, keys = (cfg.text_column, cfg.label_column), ("data.text_column", "data.label_column")
    tables = {split: _split_table(cfg, split) for split in SPLITS}
    rows, out_of_scope = {}, {}
    for split, table in tables.items():
        if table is not None:
            rows[split], out_of_scope[split] = _split_out_of_scope(table_rows(table, columns, keys), cfg)
    label_names = tuple(sorted({label.strip() for _, label in _texts_and_labels(rows["train"], cfg)}))
    if len(label_names) < 2:
        raise BadInput(f"{tables['train'].source}: needs at least two distinct labels in column "
                       f"{cfg.label_column!r}, found {list(label_names)}")
    index = {name: i for i, name in enumerate(label_names)}

    def to_split(split: str) -> Split:
        examples = _texts_and_labels(rows[split], cfg)
        unseen = sorted({label.strip() for _, label in examples} - set(index))
        if unseen:
            raise BadInput(
                f"{tables[split].source}: label(s) {', '.join(unseen[:5])} do not occur in {tables['train'].source}; "
                "add training examples for them or remove those rows"
            )
        return Split(tuple(t.strip() for t, _ in examples), tuple(index[label.strip()] for _, label in examples))

    train, test = to_split("train"), to_split("test")
    if "validation" in rows:
        validation, carved = to_split("validation"), False
    else:
        (train, validation), carved = _carve(train, cfg.validation_fraction, seed), True
    oos = OutOfScope(tuple(out_of_scope.get("validation", []) + out_of_scope["train"]), tuple(out_of_scope["test"]))
    return Dataset(label_names, train, validation, test, carved, oos)


def _texts_and_labels(rows: list[dict[str, str]], cfg: DataConfig) -> list[tuple[str, str]]:
    return [(r[cfg.text_column], r[cfg.label_column]) for r in rows]


def _split_out_of_scope(rows: list[dict], cfg: DataConfig) -> tuple[list[dict], list[str]]:
    """(rows of known intents, texts labelled data.out_of_scope_label); no label is out of scope unless named."""
    if cfg.out_of_scope_label is None:
        return rows, []
    label = cfg.out_of_scope_label.strip()
    text, column = cfg.text_column, cfg.label_column
    return ([r for r in rows if r[column].strip() != label],
            [r[text].strip() for r in rows if r[column].strip() == label])


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
    return [r["text"].strip() for r in read_rows(path, ("text",))]


def split_source(cfg: DataConfig, split: str) -> str:
    """Where a split comes from, for messages: its file, or the dataset's split."""
    return f"dataset {cfg.dataset} split {split}" if cfg.dataset else str(getattr(cfg, split))


def dataset_digest(cfg: DataConfig) -> str | None:
    """Content identity of a Hugging Face dataset the recipe reads (files are hashed as files)."""
    if cfg.dataset is None:
        return None
    from edgetune.readers import hub_fingerprint

    return hub_fingerprint(cfg.dataset, cfg.dataset_config)


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
