"""An interrupted training resumes from its last epoch's checkpoint when the build is rerun, and several
processes train one model under accelerate launch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import REPO, build


def child_env() -> dict:
    # A checkpoint after every epoch, however short (the tiny model's take a fraction of a second).
    return os.environ | {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "COLUMNS": "250",
                         "EDGETUNE_CHECKPOINT_SECONDS": "0"}


def teacher_folder(out: Path) -> Path:
    (folder,) = (out / "cache").glob("teacher-*")
    return folder


def test_a_teacher_killed_mid_training_resumes_from_its_checkpoint(make_recipe, tmp_path, monkeypatch):
    # The killed run, the resumed one and the fresh one all train on one thread: a float sum's order, and so the
    # trained weights' last bits, depend on the thread count.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    recipe = make_recipe({"teacher.epochs": 30, "teacher.patience": 100})
    out = tmp_path / "out"
    log = (tmp_path / "killed.log").open("w")
    child = subprocess.Popen([sys.executable, "-m", "edgetune", "teacher", "--target", "rpi5", "--recipe", str(recipe),
                              "--out", str(out)], env=child_env(), stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while not list(out.glob("cache/.resume-teacher-*/checkpoint.pt")):
        assert child.poll() is None, (tmp_path / "killed.log").read_text()
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.02)
    child.kill()  # SIGKILL: no cleanup runs, as when a machine loses power
    child.wait()
    (checkpoint,) = out.glob("cache/.resume-teacher-*/checkpoint.pt")
    saved = torch.load(checkpoint, weights_only=True)["progress"]["epoch"]
    assert 1 <= saved < 30
    assert not list((out / "cache").glob("teacher-*"))  # nothing was published

    result = build(recipe, out, command="teacher")
    assert result.exit_code == 0, result.output
    assert f"teacher: resuming after epoch {saved} " in result.output
    assert "teacher epoch 1:" not in result.output  # the epochs before the checkpoint do not run again
    manifest = json.loads((teacher_folder(out) / "manifest.json").read_text())
    assert manifest["metrics"]["resumed_after_epoch"] == saved
    assert not list((out / "cache").glob(".resume-*"))  # published: the checkpoint is gone

    # The resumed teacher is the one an uninterrupted run trains: the checkpoint held everything that mattered.
    fresh = tmp_path / "fresh"
    assert build(recipe, fresh, command="teacher").exit_code == 0
    np.testing.assert_array_equal(np.load(teacher_folder(out) / "test_logits.npy"),
                                  np.load(teacher_folder(fresh) / "test_logits.npy"))


@pytest.mark.slow
def test_two_processes_build_the_tiny_recipe_under_accelerate_launch(make_recipe, tmp_path):
    launcher = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    assert launcher, "accelerate's launcher is installed with accelerate"
    # fp32 and a higher rate: the tiny random model learns in a few epochs (bf16 autocast on such a host is slower to).
    recipe = make_recipe({"teacher.epochs": 8, "teacher.patience": 8, "teacher.learning_rate": 3.0e-3,
                          "teacher.precision": "fp32"})
    out = tmp_path / "out"
    # --multi_gpu is accelerate's torchrun launcher; without a GPU each process trains on the CPU (gloo).
    command = [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29517", "-m", "edgetune", "build",
               "--target", "rpi5", "--recipe", str(recipe), "--out", str(out)]
    done = subprocess.run(command, env=child_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "2 process(es) x 1 accumulated batch(es) of 32: 64 texts per optimizer step" in done.stdout + done.stderr
    metrics = json.loads((teacher_folder(out) / "manifest.json").read_text())["metrics"]
    # 360 training texts in 12 batches of 32: each process takes 6 an epoch, so 8 epochs are 48 optimizer steps.
    assert (metrics["processes"], metrics["steps"]) == (2.0, 48.0)
    assert metrics["validation_accuracy"] > 0.075  # 20 labels: chance is 0.05
    assert not list((out / "cache").glob(".tmp-*"))  # the other process published nothing
    assert (out / "rpi5" / "bundle" / "model.onnx").is_file()  # export, quantize and bench ran once, on the main
    assert (done.stdout + done.stderr).count("bench: latency, size and accuracy") == 1
