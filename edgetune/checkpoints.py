"""A training checkpoint per epoch, so an interrupted teacher, student or adapter resumes where it stopped.

A stage builds in a staging folder that is thrown away when the process dies; its checkpoint lives beside it in
`.resume-<stage>-<key>` (the same cache key: the same recipe, data and upstream), which a rerun of the build
finds. Publishing the stage removes it. Loaded with torch.load(weights_only=True): tensors and plain values only.
"""

from __future__ import annotations

import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

CHECKPOINT = "checkpoint.pt"
# Epochs that end sooner than this after the last checkpoint are not saved: writing a MiniLM-sized checkpoint took
# 0.6-2 s here, a third of a 3-second demo epoch, while losing seconds of training costs nothing.
MIN_SECONDS_ENV = "EDGETUNE_CHECKPOINT_SECONDS"
MIN_SECONDS_DEFAULT = 30.0


def min_seconds() -> float:
    return float(os.environ.get(MIN_SECONDS_ENV, MIN_SECONDS_DEFAULT))


def _trained_part(model, state: dict) -> dict:
    """What training changes: trained parameters and buffers. Frozen weights are the ones a rerun loads anyway."""
    frozen = {name for name, param in model.named_parameters() if not param.requires_grad}
    return {name: tensor for name, tensor in state.items() if name not in frozen}


@dataclass
class Progress:
    """Where training stands after an epoch, and the best epoch so far (early stopping restores it)."""

    epoch: int = 0
    step: int = 0  # optimizer steps taken
    best_key: tuple = (-1.0, -1.0)
    best_epoch: int = 0
    best_metrics: dict = field(default_factory=dict)
    stale: int = 0  # epochs since validation last improved


def save(folder: Path, *, desc: str, processes: int, model, extra_params, optimizer, schedule, rng: random.Random,
         progress: Progress, best_state: dict) -> None:
    """Everything the next epoch depends on; the best weights only when they are not the current ones."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        "desc": desc,
        "processes": processes,  # the batches each process trained on depend on how many there were
        "model": _trained_part(model, model.state_dict()),
        "extra": [p.detach().cpu() for p in extra_params],
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "rng": {"batches": rng.getstate(), "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
        "progress": asdict(progress),
        "best_state": None if progress.best_epoch == progress.epoch else _trained_part(model, best_state),
    }
    tmp = folder / f"{CHECKPOINT}.{os.getpid()}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, folder / CHECKPOINT)  # a kill mid-write leaves the previous epoch's checkpoint whole


def load(folder: Path | None, desc: str, processes: int) -> dict | None:
    """The checkpoint of this training (`desc`) with as many processes, or None: start afresh."""
    path = folder / CHECKPOINT if folder is not None else None
    if path is None or not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("desc") != desc:
        return None
    if state.get("processes") != processes:
        from edgetune.console import log

        log(f"{desc}: the checkpoint in {folder} was trained by {state.get('processes')} process(es), this run has "
            f"{processes}: starting afresh")
        return None
    return state


def restore(state: dict, *, model, extra_params, optimizer, schedule, rng: random.Random) -> tuple[Progress, dict]:
    """Put the saved epoch back in place; returns its progress and the best weights so far."""
    full = model.state_dict()
    model.load_state_dict(full | state["model"])
    with torch.no_grad():
        for param, saved in zip(extra_params, state["extra"]):
            param.copy_(saved)
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    version, internal, gauss = state["rng"]["batches"]
    rng.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["rng"]["torch"])
    if state["rng"]["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    saved = state["progress"]
    progress = Progress(**{**saved, "best_key": tuple(saved["best_key"])})
    best = state["best_state"] if state["best_state"] is not None else state["model"]
    best_state = {name: tensor.clone() for name, tensor in (full | best).items()}
    return progress, best_state
