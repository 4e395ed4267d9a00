"""Data from anywhere: JSON Lines and Parquet folders with the recipe's column names, Hugging Face datasets, and
the messages for a missing column, an empty split and unseen labels."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from edgetune.data import load_dataset
from edgetune.errors import BadInput
from edgetune.pipeline import fingerprints
from edgetune.recipe import DataConfig, load_recipe
from edgetune.targets import load_target
from helpers import SMART_HOME, build, write_csv

COLUMNS = ["--set", "data.text_column=utterance", "--set", "data.label_column=intent"]


def smart_home_rows(split: str) -> list[dict]:
    """The smart-home split under other column names, with an extra column a reader must ignore."""
    with open(SMART_HOME / f"{split}.csv", newline="", encoding="utf-8") as handle:
        return [{"id": i, "utterance": r["text"], "intent": r["label"]} for i, r in enumerate(csv.DictReader(handle))]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def smart_home_folder(folder: Path, write, suffix: str) -> Path:
    for split in ("train", "validation", "test"):
        write(folder / f"{split}{suffix}", smart_home_rows(split))
    return folder


def teacher_logits(out: Path) -> np.ndarray:
    (folder,) = (out / "cache").glob("teacher-*")
    return np.load(folder / "test_logits.npy")


def test_a_json_lines_folder_with_its_own_column_names_builds_the_same_model_as_the_csvs(base_build, tmp_path):
    folder = smart_home_folder(tmp_path / "jsonl", write_jsonl, ".jsonl")
    out = tmp_path / "out"
    result = build(base_build.recipe, out, "--data", folder, *COLUMNS)
    assert result.exit_code == 0, result.output
    report = (out / "rpi5" / "report.json").read_text()
    assert '"test_examples": 160' in report and (out / "rpi5" / "bundle" / "model.onnx").is_file()
    # Same texts, labels and seed as the CSV build: the teacher learned exactly the same function.
    np.testing.assert_array_equal(teacher_logits(out), teacher_logits(base_build.out))


def test_a_parquet_folder_trains_the_teacher(base_build, tmp_path):
    folder = smart_home_folder(tmp_path / "parquet", write_parquet, ".parquet")
    out = tmp_path / "out"
    result = build(base_build.recipe, out, "--data", folder, *COLUMNS, command="teacher")
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(teacher_logits(out), teacher_logits(base_build.out))


def test_the_columns_read_are_part_of_the_cache_key(make_recipe, tmp_path):
    folder = tmp_path / "data"
    for split in ("train", "test"):
        write_jsonl(folder / f"{split}.jsonl", [{"a": "turn on", "b": "x", "label": "on", "text": "off"},
                                                {"a": "turn off", "b": "y", "label": "off", "text": "on"}])
    target = load_target("rpi5")
    keys = [fingerprints(load_recipe(make_recipe(), data_dir=folder, overrides=sets), target)["teacher"]["key"]
            for sets in ((), ("data.text_column=a",), ("data.text_column=a", "data.label_column=b"))]
    assert len(set(keys)) == 3


def test_parquet_numbers_and_json_integers_read_as_labels(tmp_path):
    rows = [{"text": "turn on", "label": 1}, {"text": "turn off", "label": 0}, {"text": "", "label": None}]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    test = write_parquet(tmp_path / "test.parquet", [{"text": "switch on", "label": 1.0}])
    data = load_dataset(DataConfig(train=str(train), test=str(test)), seed=0)
    assert data.label_names == ("0", "1") and data.test.labels == (1,)
    assert len(data.train.texts) + len(data.validation.texts) == 2  # the row without text is dropped


def hub_dataset(folder: Path, splits: dict[str, list[tuple[str, int]]], names: list[str]) -> Path:
    """A dataset in the layout `datasets` loads itself (the Hub is not reachable in tests), with a class-label
    column as the Hub's classification datasets have."""
    import datasets

    features = datasets.Features({"sentence": datasets.Value("string"), "intent": datasets.ClassLabel(names=names)})
    (folder / "data").mkdir(parents=True)
    for split, rows in splits.items():
        table = {"sentence": [t for t, _ in rows], "intent": [label for _, label in rows]}
        datasets.Dataset.from_dict(table, features=features).to_parquet(str(folder / "data" / f"{split}.parquet"))
    return folder


def test_a_hugging_face_dataset_is_read_with_its_class_label_names(tmp_path):
    splits = {"train": [("lights on", 1), ("lights off", 0), ("on please", 1), ("off please", 0)],
              "test": [("switch it on", 1), ("switch it off", 0)]}
    source = hub_dataset(tmp_path / "hub-dataset", splits, ["lights_off", "lights_on"])
    data = load_dataset(DataConfig(dataset=str(source), text_column="sentence", label_column="intent"), seed=0)
    assert data.label_names == ("lights_off", "lights_on")
    assert data.test.texts == ("switch it on", "switch it off") and data.test.labels == (1, 0)
    assert data.validation_carved  # the dataset has no validation split


def test_the_teacher_trains_on_a_hugging_face_dataset(base_build, tmp_path):
    names = sorted({r["intent"] for r in smart_home_rows("train")})
    splits = {split: [(r["utterance"], names.index(r["intent"])) for r in smart_home_rows(split)]
              for split in ("train", "validation", "test")}
    source = hub_dataset(tmp_path / "hub-dataset", splits, names)
    out = tmp_path / "out"
    sets = ["data.train=null", "data.validation=null", "data.test=null", f"data.dataset={source}",
            "data.text_column=sentence", "data.label_column=intent"]
    result = build(base_build.recipe, out, *[a for s in sets for a in ("--set", s)], command="teacher")
    assert result.exit_code == 0, result.output
    # The same texts and labels as the CSVs: the same teacher.
    np.testing.assert_array_equal(teacher_logits(out), teacher_logits(base_build.out))
    material = json.loads(next((out / "cache").glob("teacher-*/manifest.json")).read_text())["material"]
    assert set(json.loads(material["dataset"])) == {"train", "validation", "test"}  # the splits' fingerprints


def test_an_uncached_dataset_says_the_hub_is_unreachable(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # what hub_reachable() reports on a machine without network
    with pytest.raises(BadInput, match="Hub is unreachable and the dataset is not in the datasets cache"):
        load_dataset(load_recipe(data_dir="edgetune-tests/no-such-dataset").data, seed=0)


def expect_bad(base_build, tmp_path, folder: Path, *expected: str, sets=COLUMNS):
    out = tmp_path / "out"
    result = build(base_build.recipe, out, "--data", folder, *sets, command="teacher")
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())  # rich wraps long lines
    for part in expected:
        assert part in message, message
    assert not list((out / "cache").glob("teacher-*"))


def test_a_missing_column_names_the_file_the_column_the_columns_present_and_the_key(base_build, tmp_path):
    folder = smart_home_folder(tmp_path / "data", write_jsonl, ".jsonl")
    expect_bad(base_build, tmp_path, folder, str(folder / "train.jsonl"), "missing column(s) text",
               "set data.text_column", "found: id,utterance,intent", sets=["--set", "data.label_column=intent"])


def test_an_empty_split_is_named(base_build, tmp_path):
    folder = smart_home_folder(tmp_path / "data", write_parquet, ".parquet")
    write_parquet(folder / "test.parquet", [{"id": 0, "utterance": "   ", "intent": "lights_on"}])
    expect_bad(base_build, tmp_path, folder, str(folder / "test.parquet"), "no rows with text")


def test_a_test_label_unseen_in_training_is_named(base_build, tmp_path):
    folder = smart_home_folder(tmp_path / "data", write_jsonl, ".jsonl")
    write_jsonl(folder / "test.jsonl", smart_home_rows("test") + [{"utterance": "brew a coffee", "intent": "coffee"}])
    expect_bad(base_build, tmp_path, folder, str(folder / "test.jsonl"), "label(s) coffee do not occur in")


def test_two_files_for_one_split_and_unknown_formats_are_refused(base_build, tmp_path):
    folder = smart_home_folder(tmp_path / "data", write_jsonl, ".jsonl")
    write_parquet(folder / "test.parquet", smart_home_rows("test"))
    expect_bad(base_build, tmp_path, folder, "test.jsonl and test.parquet both hold the test split")
    with pytest.raises(BadInput, match="unknown data format '.tsv'"):
        load_dataset(DataConfig(train=str(write_csv(tmp_path / "train.tsv", "text\tlabel\n")), test="x"), seed=0)


def test_a_broken_json_line_is_located(tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text('{"text": "on", "label": "a"}\n{"text": "off", "label": \n', encoding="utf-8")
    with pytest.raises(BadInput, match=r"train.jsonl:2: not valid JSON"):
        load_dataset(DataConfig(train=str(train), test=str(train)), seed=0)


def test_a_text_without_a_label_is_located(tmp_path):
    rows = [{"utterance": "on", "intent": "a"}, {"utterance": "off", "intent": None}]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    cfg = DataConfig(train=str(train), test=str(train), text_column="utterance", label_column="intent")
    with pytest.raises(BadInput, match=r"train.jsonl: data row 2 has text but an empty 'intent'"):
        load_dataset(cfg, seed=0)
