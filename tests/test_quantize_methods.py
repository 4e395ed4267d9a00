"""int4 algorithms, calibration methods, accuracy-aware quantization and their bad input, on the tiny model.

Each build works on a private copy of the shared tiny build, so only the quantize and bench stages run again.
Accuracy-aware mode is forced with a deliberately broken setting: int8-static calibrated on one two-letter text,
whose activation ranges clip real inputs.
"""

from __future__ import annotations

import json

import pytest
from helpers import (
    assert_mentions,
    build,
    cache_entries,
    cache_folders,
    plain,
    stage_statuses,
    write_csv,
)


def quantize_folder(out):
    """The quantize cache entry the last build's bundle came from (named by the bench manifest's upstream key)."""
    manifest = json.loads((out / "rpi5" / "bundle" / "manifest.json").read_text())
    folder = out / "cache" / f"quantize-{manifest['material']['upstream']['quantize'][:16]}"
    assert folder.is_dir(), folder
    return folder


def op_types(path) -> set[str]:
    import onnx

    return {node.op_type for node in onnx.load(str(path)).graph.node}


@pytest.fixture
def broken_calibration(tmp_path):
    return write_csv(tmp_path / "one-text.csv", "text\nok\n")


# --- int4 algorithms -------------------------------------------------------------------------------------

@pytest.mark.parametrize("algorithm", ["rtn", "hqq", "gptq"])
def test_int4_algorithm_builds_runs_and_says_what_it_did(built, algorithm):
    result = build(built.recipe, built.out, "--set", "quantize.method=int4", "--set", f"quantize.int4_algorithm={algorithm}",
                   "--set", "quantize.block_size=16", "--set", "quantize.calibration_samples=32")
    assert result.exit_code == 0, result.output
    assert stage_statuses(result.output)["quantize"] == "built"
    folder = quantize_folder(built.out)
    ops = op_types(folder / "model.onnx")
    assert "MatMulNBits" in ops
    assert "GatherBlockQuantized" in ops, "every algorithm ships int4 embeddings (rtn for the Gather)"
    summary = json.loads((folder / "quantize.json").read_text())
    assert summary["method"] == "int4" and summary["int4_algorithm"] == algorithm
    assert f"int4 weight-only ({algorithm}, block 16" in summary["note"]
    assert summary["quantized_nodes"]["MatMul"] > 0 and summary["quantized_nodes"]["Gather"] > 0
    assert {f["op_type"] for f in summary["float_nodes"]} <= {"MatMul", "Gemm"}  # attention scores, pooler, head
    assert all(f["reason"] for f in summary["float_nodes"])
    assert (summary["calibration"] is not None) == (algorithm == "gptq")
    report = json.loads((built.out / "rpi5" / "report.json").read_text())
    assert 0.0 <= report["accuracy"] <= 1.0 and report["cold_start_ms"] > 0  # the bundle's predict.py ran
    # int4 is timed beside the int8 dynamic model of the same export, and the report says which is faster here.
    versus = report["int4_vs_int8_p95"]
    assert versus["ratio"] > 0 and versus["ci"][0] <= versus["ratio"] <= versus["ci"][1]
    assert versus["int8_size_bytes"] == summary["int8_reference_size_bytes"]
    assert "that of int8 dynamic (95% CI" in (built.out / "rpi5" / "report.md").read_text()
    assert "int8_reference.onnx" not in {p.name for p in (built.out / "rpi5" / "bundle").iterdir()}


def test_int4_accuracy_level_is_written_into_every_matmulnbits(built):
    import onnx

    result = build(built.recipe, built.out, "--set", "quantize.method=int4", "--set", "quantize.block_size=16",
                   "--set", "quantize.int4_algorithm=hqq", "--set", "quantize.int4_accuracy_level=0")
    assert result.exit_code == 0, result.output
    model = onnx.load(str(quantize_folder(built.out) / "model.onnx"))
    levels = [{a.name: a.i for a in n.attribute}.get("accuracy_level", 0) for n in model.graph.node
              if n.op_type == "MatMulNBits"]
    assert levels and set(levels) == {0}


# --- calibration -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_histogram_calibration_handles_batches_of_different_lengths(built, method):
    """onnxruntime's histogram calibrators stack what they are fed into one array; edgetune feeds them a batch at a
    time (strided calibration), which also keeps memory flat on large calibration sets."""
    result = build(built.recipe, built.out, "--set", "quantize.method=int8-static",
                   "--set", f"quantize.calibration_method={method}", "--set", "quantize.calibration_samples=40")
    assert result.exit_code == 0, result.output
    folder = quantize_folder(built.out)
    assert {"QuantizeLinear", "DequantizeLinear"} <= op_types(folder / "model.onnx")
    summary = json.loads((folder / "quantize.json").read_text())
    assert summary["calibration"]["method"] == method and summary["calibration"]["texts"] == 40


def test_calibration_reader_reads_each_stride_once_and_in_order():
    from transformers import BertTokenizerFast

    from edgetune.quantizers.int8_static import TextCalibrationReader

    class Tokenizer:
        pad_token_id = 0

        def __call__(self, texts, truncation, max_length):
            return {"input_ids": [[1] * len(t.split()) for t in texts]}

    assert BertTokenizerFast  # the real reader is exercised by the builds above; this checks the stride protocol
    texts = [" ".join(["w"] * (i + 1)) for i in range(20)]
    reader = TextCalibrationReader(texts, Tokenizer(), ("input_ids", "attention_mask"), 64, batch_size=8)
    assert len(reader) == 3
    widths = []
    for start in range(len(reader)):
        reader.set_range(start, start + 1)
        batch = reader.get_next()
        widths.append(batch["input_ids"].shape)
        assert reader.get_next() is None
    assert widths == [(8, 8), (8, 16), (4, 20)]


# --- accuracy-aware mode ---------------------------------------------------------------------------------
# The tiny model is near chance on validation, so whether a given quantization costs it accuracy on the real labels
# is luck. The search itself is tested deterministically below on validation texts labelled with the fp32 model's
# own predictions (fp32 accuracy 1.0: every flipped prediction is a drop); the build-level tests check the wiring.

@pytest.fixture
def aware_setup(base_build, tmp_path):
    """Everything sensitivity.accuracy_aware needs, for int8-static calibrated on one two-letter text."""
    from transformers import AutoTokenizer

    from edgetune import quantizers, runtime, sensitivity
    from edgetune.data import Split, load_dataset
    from edgetune.quantizers.graph import quantizable
    from edgetune.recipe import load_recipe
    from edgetune.targets import load_target
    from edgetune.training import input_names_of

    (export,) = [base_build.out / "cache" / n for n in cache_entries(base_build.out) if n.startswith("export-")]
    recipe = load_recipe(base_build.recipe, overrides=("quantize.method=int8-static",))
    preset = load_target("rpi5").quantization
    hf_tokenizer = AutoTokenizer.from_pretrained(export)
    method = quantizers.get("int8-static")(recipe.quantize, preset, export / "model.onnx", tmp_path)
    method.prepare(["ok"], hf_tokenizer, input_names_of(hf_tokenizer), 32)
    shipped = tmp_path / "model.onnx"
    method(shipped)
    texts = load_dataset(recipe.data, recipe.seed).validation.texts
    tokenizer = runtime.load_tokenizer(export, runtime.preprocess_settings(export, 32))
    feeds, order = sensitivity.feeds_of(texts, tokenizer, export / "model.onnx")
    labels = sensitivity.logits_of(export / "model.onnx", feeds, order).argmax(-1)
    candidates = quantizable(export / "model.onnx", method)

    def run(tolerance: float, cap: int | None = None):
        return sensitivity.accuracy_aware(
            method, shipped=shipped, reference=export / "model.onnx", float_graph=export / "model.onnx",
            candidates=candidates, validation=Split(texts, tuple(int(x) for x in labels)), tokenizer=tokenizer,
            tolerance=tolerance, cap=cap, source="recipe.yaml", work=tmp_path)

    return run, shipped, candidates


def test_search_keeps_the_most_sensitive_nodes_float_until_within_tolerance(aware_setup):
    run, shipped, candidates = aware_setup
    before = shipped.read_bytes()
    kept, record = run(tolerance=0.0)
    table = record["table"]
    assert table["validation_accuracy_fp32"] == 1.0
    assert table["initial"]["drop"] > 0.0, "one-text calibration clips real inputs: some predictions must flip"
    assert table["final"]["drop"] <= 0.0
    rows = table["nodes"]
    assert len(rows) == len(candidates) and [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    assert [r["error"] for r in rows] == sorted((r["error"] for r in rows), reverse=True)
    assert 1 <= len(kept) <= len(rows)
    assert list(kept) == [r["node"] for r in rows[: len(kept)]] == table["kept_float"]
    assert all(r["kept_float"] == (r["node"] in kept) for r in rows)
    assert all(reason.startswith("accuracy-aware: kept float, sensitivity rank") for reason in kept.values())
    assert record["metrics"]["nodes_kept_float"] == len(kept) and record["metrics"]["sensitivity_nodes"] == len(rows)
    passing = [t for t in table["search"] if t["within_tolerance"]]
    assert min(t["float_nodes"] for t in passing) == len(kept)  # the fewest float nodes that met the tolerance
    assert shipped.read_bytes() != before


def test_search_that_cannot_meet_the_tolerance_names_the_best_drop(aware_setup):
    from edgetune.errors import StageFailed

    run, _, _ = aware_setup
    with pytest.raises(StageFailed) as failure:
        run(tolerance=0.0, cap=0)
    message = str(failure.value)
    assert "could not meet quantize.max_accuracy_drop=0" in message
    assert "the best validation accuracy drop was" in message and "with 0 node(s) kept float" in message
    assert "quantize.max_float_nodes=0" in message and "recipe.yaml" in message


def test_accuracy_aware_build_checks_the_drop_and_writes_what_it_did(built, broken_calibration):
    """Through the CLI on the real validation labels: the drop is measured, and met, with or without exclusions."""
    result = build(built.recipe, built.out, "--set", "quantize.method=int8-static",
                   "--set", f"quantize.calibration={broken_calibration}", "--set", "quantize.max_accuracy_drop=0.0")
    assert result.exit_code == 0, result.output
    folder = quantize_folder(built.out)
    metrics = json.loads((folder / "manifest.json").read_text())["metrics"]
    summary = json.loads((folder / "quantize.json").read_text())["accuracy_aware"]
    assert metrics["accuracy_drop"] <= 0.0 and summary["final"]["drop"] <= 0.0
    assert metrics["nodes_kept_float"] == len(summary["kept_float"])
    assert (folder / "sensitivity.json").exists() == (summary["initial"]["drop"] > 0.0)
    if summary["kept_float"]:
        table = json.loads((folder / "sensitivity.json").read_text())
        assert table["kept_float"] == summary["kept_float"]
        reasons = {f["node"]: f["reason"] for f in json.loads((folder / "quantize.json").read_text())["float_nodes"]}
        assert all(reasons[n].startswith("accuracy-aware") for n in summary["kept_float"])


def test_accuracy_aware_within_tolerance_changes_nothing(built):
    result = build(built.recipe, built.out, "--set", "quantize.max_accuracy_drop=0.5")
    assert result.exit_code == 0, result.output
    folder = quantize_folder(built.out)
    assert not (folder / "sensitivity.json").exists()
    metrics = json.loads((folder / "manifest.json").read_text())["metrics"]
    assert metrics["nodes_kept_float"] == 0 and metrics["accuracy_drop"] <= 0.5


def test_impossible_tolerance_exits_1_with_the_best_drop_reached(built):
    """A negative tolerance asks the quantized model to beat fp32 by 50 points: no exclusion gets there."""
    before = cache_entries(built.out)
    result = build(built.recipe, built.out, "--set", "quantize.max_accuracy_drop=-0.5",
                   "--set", "quantize.max_float_nodes=2")
    assert result.exit_code == 1, result.output
    text = plain(result.output)
    assert "could not meet quantize.max_accuracy_drop=-0.5" in text
    assert "the best validation accuracy drop was" in text and "node(s) kept float" in text
    assert "quantize.max_float_nodes=2" in text
    assert cache_entries(built.out) == before  # the failed stage published nothing; earlier stages stay


# --- bad input -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("setting, mentions", [
    ("quantize.int4_algorithm=awq", ("quantize.int4_algorithm", "awq", "rtn", "hqq", "gptq")),
    ("quantize.calibration_method=kl", ("quantize.calibration_method", "kl", "minmax", "entropy", "percentile")),
    ("quantize.max_accuracy_drop=1.5", ("quantize.max_accuracy_drop", "1.5")),
    ("quantize.max_float_nodes=-1", ("quantize.max_float_nodes",)),
    ("quantize.int4_accuracy_level=7", ("quantize.int4_accuracy_level", "7")),
])
def test_bad_quantize_values_exit_2_before_any_work(make_recipe, tmp_path, setting, mentions):
    out = tmp_path / "fresh"
    result = build(make_recipe(), out, "--set", setting)
    assert result.exit_code == 2, result.output
    assert_mentions(result.output, *mentions)
    assert cache_folders(out) == set()  # nothing trained


def test_empty_gptq_calibration_file_is_bad_input(built, tmp_path):
    empty = write_csv(tmp_path / "empty.csv", "text\n")
    result = build(built.recipe, built.out, "--set", "quantize.method=int4", "--set", "quantize.int4_algorithm=gptq",
                   "--set", f"quantize.calibration={empty}")
    assert result.exit_code == 2, result.output
    assert_mentions(result.output, empty, "no rows with text")
