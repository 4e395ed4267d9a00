"""Bad input exits 2 with a message that names the file, key or value at fault, before any stage runs.

Most cases run against a copy of a finished build, to check that a rejected command leaves the cache exactly as
it was; the cases about the teacher run in an empty folder, to check that nothing at all gets built.
"""

from __future__ import annotations

import gzip

import pytest

from helpers import (
    BUILTIN_TARGETS,
    CALIBRATION,
    SMART_HOME,
    assert_mentions,
    build,
    cache_folders,
    invoke,
    manifest_identities,
    plain,
    staging_leftovers,
    write_csv,
)


def expect_bad_input(out, run, *mentions):
    """Run `run()`; expect exit 2, an error naming every one of `mentions`, and `out` left exactly as it was."""
    folders, manifests = cache_folders(out), manifest_identities(out)
    result = run()
    assert result.exit_code == 2, result.output
    assert "error:" in plain(result.stderr)
    assert_mentions(result.stderr, *mentions)
    assert cache_folders(out) == folders
    assert manifest_identities(out) == manifests
    assert staging_leftovers(out) == []
    return result


# --- target and recipe -----------------------------------------------------------------------------------

def test_unknown_target_is_named_and_known_targets_listed(built):
    expect_bad_input(built.out, lambda: build(built.recipe, built.out, target="no-such-board"),
                     "unknown target 'no-such-board'", *BUILTIN_TARGETS)


def test_missing_target_file_is_named(built, tmp_path):
    board = tmp_path / "boards" / "my-board.yaml"
    expect_bad_input(built.out, lambda: build(built.recipe, built.out, target=str(board)), board, "not found")


def test_unknown_recipe_key_names_file_key_and_suggestion(built, make_recipe):
    recipe = make_recipe({"distill.temprature": 2.0}, name="typo.yaml")
    expect_bad_input(built.out, lambda: build(recipe, built.out),
                     recipe, "unknown key 'distill.temprature'", "did you mean 'temperature'?")


def test_unknown_recipe_key_via_set_names_key_and_suggestion(built):
    expect_bad_input(built.out, lambda: build(built.recipe, built.out, "--set", "distill.temprature=2.0"),
                     "unknown key 'distill.temprature'", "did you mean 'temperature'?")


def test_unknown_section_via_set_suggests_the_section(built):
    expect_bad_input(built.out, lambda: build(built.recipe, built.out, "--set", "quantise.method=int4"),
                     "unknown key 'quantise'", "did you mean 'quantize'?")


def test_set_without_equals_sign_is_rejected(built):
    expect_bad_input(built.out, lambda: build(built.recipe, built.out, "--set", "quantize.method"),
                     "quantize.method", "KEY=VALUE")


def test_missing_recipe_file_is_named(built, tmp_path):
    missing = tmp_path / "no-such-recipe.yaml"
    expect_bad_input(built.out, lambda: build(missing, built.out), missing, "file not found")


def test_invalid_yaml_recipe_is_named(built, tmp_path):
    recipe = tmp_path / "broken.yaml"
    recipe.write_text("distill:\n  layers: [0, 2\n")
    expect_bad_input(built.out, lambda: build(recipe, built.out), recipe, "not valid YAML")


def test_wrong_value_type_names_the_key(built):
    expect_bad_input(built.out, lambda: build(built.recipe, built.out, "--set", "tune.r=eight"),
                     "'tune.r' must be int", "eight")


@pytest.mark.parametrize(
    ("assignment", "mentions"),
    [
        ("quantize.block_size=24", ("quantize.block_size = 24", "power of two")),
        ("quantize.method=int3", ("quantize.method", "int3", "int8-dynamic", "int4")),
        ("distill.alpha=1.5", ("distill.alpha", "1.5", "[0, 1]")),
        ("distill.layers=[0, 0]", ("distill.layers", "repeats a layer")),
        ("distill.layers=[]", ("distill.layers is empty",)),
        ("teacher.epochs=0", ("teacher.epochs",)),
        ("distill.max_steps=0", ("distill.max_steps = 0", ">= 1")),
        ("distill.augment=-1", ("distill.augment = -1", ">= 0")),
        ("export.atol=0", ("export.atol must be > 0",)),
    ],
)
def test_invalid_recipe_value_is_named(built, assignment, mentions):
    expect_bad_input(built.out, lambda: build(built.recipe, built.out, "--set", assignment), built.recipe, *mentions)


# --- data ------------------------------------------------------------------------------------------------

TRAIN_ROWS = (SMART_HOME / "train.csv").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("split", "content", "mentions"),
    [
        pytest.param("train", None, ("file not found",), id="missing-file"),
        pytest.param("train", "utterance,intent\nturn on the lights,lights_on\nlights off,lights_off\n",
                     ("missing column(s) text, label", "found: utterance,intent"), id="no-text-label-columns"),
        pytest.param("train", b"text,label\nturn on the lights,lights_on\n\xff\xfe\x80\x81 lights,lights_off\n",
                     ("not UTF-8",), id="not-utf8"),
        pytest.param("train", gzip.compress(TRAIN_ROWS.encode()), ("not UTF-8",), id="gzipped-csv"),
        pytest.param("train", 'text,label\n"turn on the lights,lights_on\nlights off,lights_off\n',
                     ("fewer fields than the header",), id="unclosed-quote"),
        pytest.param("train", "text,label\n", ("no rows with text",), id="header-only"),
        pytest.param("train", "", ("missing column(s) text, label",), id="empty-file"),
        pytest.param("train", "text,label\nturn on the lights,lights_on\n", ("at least two distinct labels",),
                     id="one-label"),
        pytest.param("test", "text,label\nturn on the lights,lights_on\nbrew me a coffee,make_coffee\n",
                     ("make_coffee", "do not occur in"), id="test-label-not-in-train"),
        pytest.param("validation", "text,label\nbrew me a coffee,make_coffee\n", ("make_coffee",),
                     id="validation-label-not-in-train"),
    ],
)
def test_bad_data_file_is_named(built, tmp_path, split, content, mentions):
    path = tmp_path / "data" / f"{split}.csv"
    if content is not None:
        write_csv(path, content)
    expect_bad_input(built.out, lambda: build(built.recipe, built.out, "--set", f"data.{split}={path}"),
                     path, *mentions)


def test_data_folder_without_test_csv_is_rejected(built, tmp_path):
    folder = tmp_path / "my-data"
    write_csv(folder / "train.csv", TRAIN_ROWS)
    expect_bad_input(built.out, lambda: build(built.recipe, built.out, "--data", folder), folder, "missing test.csv")


def test_data_option_that_is_not_a_folder_is_rejected(built, tmp_path):
    expect_bad_input(built.out, lambda: build(built.recipe, built.out, "--data", tmp_path / "nowhere"),
                     tmp_path / "nowhere", "not a folder")


# --- quantization inputs ---------------------------------------------------------------------------------

def test_calibration_file_without_text_column_is_named(built, tmp_path):
    calibration = write_csv(tmp_path / "calibration.csv", "sentence\nturn on the lights\n")
    expect_bad_input(built.out, lambda: build(built.recipe, built.out, "--set", "quantize.method=int8-static",
                                              "--set", f"quantize.calibration={calibration}"),
                     calibration, "missing column(s) text")


def test_missing_calibration_file_is_named(built, tmp_path):
    calibration = tmp_path / "no-such-calibration.csv"
    expect_bad_input(built.out, lambda: build(built.recipe, built.out, "--set", "quantize.method=int8-static",
                                              "--set", f"quantize.calibration={calibration}"),
                     calibration, "file not found")


def test_calibration_file_with_text_column_is_accepted_by_the_preflight(tmp_path):
    from edgetune.data import read_calibration_texts

    texts = read_calibration_texts(CALIBRATION)
    assert len(texts) == 128 and all(texts)


# --- the teacher: rejected before anything is built ------------------------------------------------------

def test_missing_teacher_folder_is_named_and_nothing_is_built(make_recipe, tmp_path):
    missing = tmp_path / "models" / "no-such-teacher"
    recipe = make_recipe({"teacher.model": str(missing)})
    out = tmp_path / "out"
    expect_bad_input(out, lambda: build(recipe, out), "teacher.model", missing, "does not exist")
    assert not (out / "cache").exists()


def test_distill_layer_the_teacher_lacks_fails_before_any_training(make_recipe, tmp_path):
    recipe = make_recipe({"distill.layers": [0, 7]})
    out = tmp_path / "out"
    expect_bad_input(out, lambda: build(recipe, out), recipe, "distill.layers", "[7]", "3 layers", "0..2")
    assert not (out / "cache").exists()
    assert not out.exists() or list(out.iterdir()) == []


def test_distill_layer_the_teacher_lacks_keeps_an_existing_cache(built):
    expect_bad_input(built.out, lambda: build(built.recipe, built.out, "--set", "distill.layers=[0, 7]"),
                     "distill.layers", "[7]")


def test_unknown_lora_target_module_is_named(built):
    """A LoRA module the student lacks can only be found by loading it: exit 2, and no tune entry is left."""
    folders = cache_folders(built.out)
    result = build(built.recipe, built.out, "--set", "tune.target_modules=[query, nonexistent]")
    assert result.exit_code == 2, result.output
    assert_mentions(result.stderr, "tune.target_modules", "nonexistent")
    assert cache_folders(built.out) == folders
    assert staging_leftovers(built.out) == []


def test_status_of_empty_folder_says_nothing_is_cached(tmp_path):
    result = invoke("status", "--out", tmp_path / "empty")
    assert result.exit_code == 0
    assert "nothing cached" in plain(result.output)


# --- messages show what the user typed, verbatim ---------------------------------------------------------

@pytest.mark.parametrize("folder", ["[v2]", "[/v2]"], ids=["brackets", "closing-tag-like"])
def test_message_names_a_path_with_square_brackets_verbatim(built, tmp_path, folder):
    """Messages are plain text: a folder called "[v2]" must not vanish from (or crash) the error message."""
    missing = tmp_path / folder / "train.csv"
    expect_bad_input(built.out, lambda: build(built.recipe, built.out, "--set", f"data.train={missing}"),
                     missing, "file not found")


def test_message_repeats_a_list_override_verbatim(built):
    result = expect_bad_input(
        built.out,
        lambda: build(built.recipe, built.out, "--set", "tune.target_modules=[query,value]", "--set", "tune.r=eight"),
        "'tune.r' must be int",
    )
    assert "tune.target_modules=[query,value]" in plain(result.stderr)


# --- a target the test split cannot feed ------------------------------------------------------------------

def test_target_batch_larger_than_the_test_split_is_a_clear_error(built, tmp_path):
    """160 test utterances cannot fill one batch of 500: say so (exit 2), never a traceback."""
    board = tmp_path / "big-batch.yaml"
    board.write_text("# A batch server\narch: x86_64\ncores: 2\nbatch_size: 500\n")
    result = build(built.recipe, built.out, target=str(board))
    assert result.exit_code == 2, result.output
    assert_mentions(result.stderr, "batch_size", "500")
    assert not (built.out / "big-batch").exists()
    assert staging_leftovers(built.out) == []


def test_empty_calibration_file_is_named(built, tmp_path):
    calibration = write_csv(tmp_path / "calibration.csv", "text\n")
    expect_bad_input(built.out, lambda: build(built.recipe, built.out, "--set", "quantize.method=int8-static",
                                              "--set", f"quantize.calibration={calibration}"),
                     calibration, "no rows with text")
