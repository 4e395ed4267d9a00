"""CSV splits, label maps, the validation hold-out and batching (edgetune.data, no torch)."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from edgetune.data import length_grouped_batches, load_dataset, pad_batch, read_rows
from edgetune.errors import BadInput
from edgetune.recipe import DataConfig
from helpers import SMART_HOME, write_csv

SMART_HOME_DATA = DataConfig(train=str(SMART_HOME / "train.csv"), validation=str(SMART_HOME / "validation.csv"),
                             test=str(SMART_HOME / "test.csv"))


def test_smart_home_data_has_twenty_sorted_labels():
    data = load_dataset(SMART_HOME_DATA, seed=0)
    assert len(data.label_names) == 20
    assert list(data.label_names) == sorted(data.label_names)
    assert (len(data.train.texts), len(data.validation.texts), len(data.test.texts)) == (360, 80, 160)
    assert not data.validation_carved
    assert set(data.test.labels) == set(range(20))


def test_validation_is_carved_per_label_from_train_when_absent():
    cfg = DataConfig(train=SMART_HOME_DATA.train, test=SMART_HOME_DATA.test, validation_fraction=0.1)
    first, again = load_dataset(cfg, seed=0), load_dataset(cfg, seed=0)
    assert first.validation_carved
    assert first.validation == again.validation  # the seed fixes the hold-out
    assert len(first.train.texts) + len(first.validation.texts) == 360
    everything = load_dataset(SMART_HOME_DATA, seed=0).train
    assert Counter(first.train.texts + first.validation.texts) == Counter(everything.texts)
    per_label = Counter(first.validation.labels)
    assert set(per_label) == set(range(20)) and set(per_label.values()) == {2}  # 18 per label * 0.1, rounded
    assert load_dataset(cfg, seed=1).validation != first.validation


def test_labels_and_texts_are_stripped(tmp_path):
    train = write_csv(tmp_path / "train.csv", "text,label\n  turn on the lights ,lights_on \nlights off,lights_off\n")
    data = load_dataset(DataConfig(train=str(train), test=str(train), validation=str(train)), seed=0)
    assert data.label_names == ("lights_off", "lights_on")
    assert data.train.texts == ("turn on the lights", "lights off")
    assert data.train.labels == (1, 0)


def test_crlf_line_endings_and_quoted_commas_are_read(tmp_path):
    path = write_csv(tmp_path / "train.csv", 'text,label\r\n"hey, lights on",lights_on\r\nlights off,lights_off\r\n')
    rows = read_rows(path, ("text", "label"))
    assert [(r["text"], r["label"]) for r in rows] == [("hey, lights on", "lights_on"), ("lights off", "lights_off")]


def test_rows_without_text_are_dropped(tmp_path):
    path = write_csv(tmp_path / "train.csv", "text,label\n   ,lights_on\nlights off,lights_off\n")
    assert [r["text"] for r in read_rows(path, ("text", "label"))] == ["lights off"]


def test_csv_saved_with_a_utf8_byte_order_mark_is_read(tmp_path):
    """Excel's "CSV UTF-8" puts a BOM before the header: it is still a UTF-8 CSV with a `text` column."""
    path = tmp_path / "train.csv"
    path.write_bytes(b"\xef\xbb\xbf" + (SMART_HOME / "train.csv").read_bytes())
    rows = read_rows(path, ("text", "label"))
    assert len(rows) == 360 and rows[0]["text"] == "close the blinds in the hallway"


def test_missing_column_message_names_file_and_header(tmp_path):
    path = write_csv(tmp_path / "train.csv", "sentence,label\nhi,a\n")
    with pytest.raises(BadInput) as err:
        read_rows(path, ("text", "label"))
    assert str(path) in str(err.value) and "missing column(s) text" in str(err.value)


def test_pad_batch_pads_to_the_longest_row_and_masks_padding():
    batch = pad_batch([[2, 5, 3], [2, 3]], pad_id=0)
    np.testing.assert_array_equal(batch["input_ids"], [[2, 5, 3], [2, 3, 0]])
    np.testing.assert_array_equal(batch["attention_mask"], [[1, 1, 1], [1, 1, 0]])
    np.testing.assert_array_equal(batch["token_type_ids"], np.zeros((2, 3)))
    assert batch["input_ids"].dtype == np.int64
    fixed = pad_batch([[2, 5, 3, 4]], pad_id=9, length=2)
    np.testing.assert_array_equal(fixed["input_ids"], [[2, 5]])


def test_length_grouped_batches_cover_every_example_once():
    lengths = [random.Random(1).randint(3, 30) for _ in range(1000)]
    batches = length_grouped_batches(lengths, 32, random.Random(0))
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(1000))
    assert all(1 <= len(b) <= 32 for b in batches)
    assert batches == length_grouped_batches(lengths, 32, random.Random(0))
