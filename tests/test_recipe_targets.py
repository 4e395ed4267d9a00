"""Loading recipes and target profiles: defaults, --set parsing, path resolution, and messages for typos."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from edgetune.errors import BadInput
from edgetune.pipeline import fingerprints
from edgetune.recipe import DEFAULT_RECIPE, load_recipe
from edgetune.targets import known_targets, load_target
from helpers import BUILTIN_TARGETS, REPO, SMART_HOME, write_recipe

# --- recipes ---------------------------------------------------------------------------------------------


def test_default_recipe_loads_with_packaged_data():
    recipe = load_recipe()
    assert recipe.source == str(DEFAULT_RECIPE)
    assert recipe.teacher.model == "sentence-transformers/all-MiniLM-L6-v2"
    assert recipe.distill.layers == (0, 5)
    assert recipe.quantize.method == "int8-dynamic"
    for split in ("train", "validation", "test"):
        path = Path(getattr(recipe.data, split))
        assert path.is_absolute() and path == (SMART_HOME / f"{split}.csv").resolve()


def test_a_recipe_that_sets_only_its_data_gets_exactly_the_default_recipe(tmp_path):
    """One set of defaults: the dataclasses' and default.yaml's cannot drift apart (KD at T=2, alpha 0.5)."""
    data_only = tmp_path / "recipe.yaml"
    data_only.write_text(yaml.safe_dump({"data": yaml.safe_load(DEFAULT_RECIPE.read_text())["data"]}))
    for split in ("train", "validation", "test"):  # the same files, from the other folder
        raw = yaml.safe_load(data_only.read_text())
        raw["data"][split] = str(SMART_HOME / f"{split}.csv")
        data_only.write_text(yaml.safe_dump(raw))
    empty, default = load_recipe(data_only), load_recipe()
    assert dataclasses.replace(empty, source=default.source) == default
    assert (default.distill.temperature, default.distill.alpha) == (2.0, 0.5)


def test_set_parses_numbers_lists_and_strings():
    recipe = load_recipe(overrides=(
        "distill.layers=[1, 3]", "teacher.learning_rate=3e-4", "tune.r=4", "quantize.method=int4",
        "bench.max_seconds=2", "quantize.optimize=false", "tune.target_modules=[query, key]",
    ))
    assert recipe.distill.layers == (1, 3)
    assert recipe.teacher.learning_rate == pytest.approx(3e-4) and isinstance(recipe.teacher.learning_rate, float)
    assert recipe.tune.r == 4 and isinstance(recipe.tune.r, int)
    assert recipe.quantize.method == "int4"
    assert recipe.bench.max_seconds == 2.0 and isinstance(recipe.bench.max_seconds, float)
    assert recipe.quantize.optimize is False
    assert recipe.tune.target_modules == ("query", "key")
    assert recipe.distill.temperature == 2.0  # untouched keys keep the file's values


def test_set_value_containing_equals_sign_keeps_the_rest():
    recipe = load_recipe(overrides=("teacher.model=/models/a=b",))
    assert recipe.teacher.model == "/models/a=b"


def test_later_set_wins():
    assert load_recipe(overrides=("tune.r=4", "tune.r=16")).tune.r == 16


def test_paths_in_a_recipe_file_resolve_against_the_file(tmp_path, monkeypatch):
    folder = tmp_path / "project"
    (folder / "data").mkdir(parents=True)
    recipe = folder / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"data": {"train": "data/train.csv", "test": "data/test.csv"}}))
    monkeypatch.chdir(tmp_path)
    loaded = load_recipe(recipe)
    assert loaded.data.train == str(folder / "data" / "train.csv")
    assert loaded.data.validation is None


def test_paths_given_with_set_resolve_against_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    loaded = load_recipe(overrides=("data.train=mine/train.csv", "quantize.calibration=cal.csv"))
    assert loaded.data.train == str(tmp_path / "mine" / "train.csv")
    assert loaded.quantize.calibration == str(tmp_path / "cal.csv")
    assert loaded.data.test == str((SMART_HOME / "test.csv").resolve())  # from the file, against the file


def test_data_folder_replaces_the_recipe_splits(tmp_path):
    for split in ("train", "test"):
        (tmp_path / f"{split}.csv").write_text("text,label\n")
    loaded = load_recipe(data_dir=tmp_path)
    assert loaded.data.train == str(tmp_path / "train.csv")
    assert loaded.data.test == str(tmp_path / "test.csv")
    assert loaded.data.validation is None  # carved from train, not the packaged validation.csv


def test_unknown_key_in_recipe_file_names_file_key_and_suggestion(tmp_path, tiny_teacher):
    recipe = write_recipe(tmp_path / "recipe.yaml", tiny_teacher, {"distill.temprature": 3.0})
    with pytest.raises(BadInput) as err:
        load_recipe(recipe)
    message = str(err.value)
    assert str(recipe) in message
    assert "distill.temprature" in message and "did you mean 'temperature'?" in message


def test_unknown_key_via_set_names_the_override(tmp_path):
    with pytest.raises(BadInput) as err:
        load_recipe(overrides=("tune.lora_alpah=8",))
    assert "tune.lora_alpah" in str(err.value) and "lora_alpha" in str(err.value)


def test_missing_required_key_is_named(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"data": {"train": "train.csv"}}))
    with pytest.raises(BadInput, match="missing required key 'data.test'"):
        load_recipe(recipe)


def test_recipe_that_is_not_a_mapping_is_rejected(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("- just\n- a list\n")
    with pytest.raises(BadInput, match="mapping"):
        load_recipe(recipe)


def test_recipe_file_round_trips_through_the_section_dicts():
    recipe = load_recipe()
    assert recipe.section("seed") == {"seed": 0}
    assert recipe.section("distill")["layers"] == (0, 5)
    assert set(recipe.section("quantize")) == {f.name for f in dataclasses.fields(recipe.quantize)}


# --- cache keys ------------------------------------------------------------------------------------------


def keys(*overrides: str, target: str = "rpi5") -> dict[str, str]:
    return {name: v["key"] for name, v in fingerprints(load_recipe(overrides=overrides), load_target(target)).items()}


def changed(a: dict, b: dict) -> set[str]:
    return {name for name in a if a[name] != b[name]}


def test_cache_keys_are_stable_and_cover_every_stage():
    assert keys() == keys()
    assert set(keys()) == ALL


ALL = {"teacher", "distill", "tune", "export", "quantize", "baseline", "bench"}


@pytest.mark.parametrize(
    ("override", "rebuilt"),
    [
        ("teacher.epochs=3", ALL),
        ("seed=1", ALL),
        ("distill.temperature=3.0", {"distill", "tune", "export", "quantize", "bench"}),
        ("tune.r=4", {"tune", "export", "quantize", "bench"}),
        # The baseline (the teacher as ONNX) is exported with the export settings too.
        ("export.opset=18", {"export", "quantize", "baseline", "bench"}),
        ("quantize.method=none", {"quantize", "bench"}),
        ("bench.max_seconds=3", {"bench"}),
    ],
)
def test_a_recipe_change_rebuilds_only_the_stages_that_read_it(override, rebuilt):
    assert changed(keys(), keys(override)) == rebuilt


def test_a_second_target_shares_every_stage_before_quantize():
    assert changed(keys(target="rpi5"), keys(target="x86-avx2")) == {"quantize", "bench"}
    # jetson-orin has rpi5's int8 preset: the same quantized model, only a new measurement.
    assert changed(keys(target="rpi5"), keys(target="jetson-orin")) == {"bench"}


def test_calibration_file_is_hashed_into_the_quantize_key_for_static_int8(tmp_path):
    calibration = tmp_path / "cal.csv"
    calibration.write_text("text\nturn on the lights\n")
    static = ("quantize.method=int8-static", f"quantize.calibration={calibration}")
    before = keys(*static)
    calibration.write_text("text\nturn off the lights\n")
    assert changed(before, keys(*static)) == {"quantize", "bench"}


def test_data_file_contents_are_hashed_into_every_key(tmp_path):
    train = tmp_path / "train.csv"
    train.write_bytes((SMART_HOME / "train.csv").read_bytes())
    before = keys(f"data.train={train}")
    with open(train, "a", encoding="utf-8") as handle:
        handle.write("switch the lights on,lights_on\n")
    assert changed(before, keys(f"data.train={train}")) == ALL


# --- targets ---------------------------------------------------------------------------------------------


def test_builtin_targets_are_the_five_shipped_profiles():
    assert sorted(known_targets()) == BUILTIN_TARGETS
    assert BUILTIN_TARGETS == ["cuda", "jetson-orin", "rpi5", "x86-avx2", "x86-avx512-vnni"]


@pytest.mark.parametrize("name", BUILTIN_TARGETS)
def test_every_builtin_target_loads(name):
    target = load_target(name)
    assert target.name == name
    assert target.arch in ("x86_64", "aarch64")
    assert target.cores >= 1 and target.intra_op_threads >= 1 and target.batch_size >= 1
    assert target.description  # the file's header comment
    assert target.source == str(REPO / "targets" / f"{name}.yaml")
    assert target.budgets.p95_ms and target.budgets.size_mb and target.budgets.min_accuracy


def test_rpi5_profile_values():
    rpi5 = load_target("rpi5")
    assert (rpi5.arch, rpi5.cores, rpi5.isa) == ("aarch64", 4, ("asimd", "asimddp"))
    assert rpi5.quantization.reduce_range is False
    assert load_target("x86-avx2").quantization.reduce_range is True


def test_user_target_by_path(tmp_path):
    board = tmp_path / "boards" / "my-board.yaml"
    board.parent.mkdir()
    board.write_text("# My board: 2x Cortex-A53\narch: aarch64\ncores: 2\nbudgets: {p95_ms: 50}\n")
    target = load_target(str(board))
    assert target.name == "my-board"  # from the file name
    assert (target.arch, target.cores, target.budgets.p95_ms) == ("aarch64", 2, 50.0)
    assert target.description == "My board: 2x Cortex-A53"
    assert target.source == str(board)


@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        ("arch: aarch64\ncorse: 4\n", ("unknown key 'corse'", "did you mean 'cores'?")),
        ("arch: aarch64\ncores: 4\nbudgets: {p95: 20}\n", ("unknown key 'budgets.p95'", "did you mean 'p95_ms'?")),
        ("arch: aarch64\ncores: 4\nquantization: {reduce_rnge: true}\n",
         ("unknown key 'quantization.reduce_rnge'", "did you mean 'reduce_range'?")),
        ("arch: riscv64\ncores: 4\n", ("'arch' = 'riscv64'", "x86_64", "aarch64")),
        ("arch: aarch64\n", ("missing required key 'cores'",)),
        ("arch: aarch64\ncores: 0\n", ("cores and batch_size must be >= 1",)),
        ("arch: aarch64\ncores: four\n", ("'cores' must be int",)),
    ],
)
def test_bad_user_target_names_the_file_and_the_key(tmp_path, body, mentions):
    board = tmp_path / "board.yaml"
    board.write_text(body)
    with pytest.raises(BadInput) as err:
        load_target(str(board))
    message = str(err.value)
    assert str(board) in message
    for mention in mentions:
        assert mention in message


def test_unknown_target_name_lists_the_known_ones():
    with pytest.raises(BadInput) as err:
        load_target("no-such-board")
    assert "no-such-board" in str(err.value)
    for name in BUILTIN_TARGETS:
        assert name in str(err.value)
