"""Several processes, one build: what `accelerate launch` / torchrun runs.

Every process trains (teacher, distill and tune run data-parallel through accelerate in edgetune/training.py);
only the main process publishes a stage's folder and runs the stages that do not train (export, quantize,
baseline, bench), while the others wait for it. One process (the usual case) runs everything and waits for none.
"""

from __future__ import annotations

import os

TRAINING_STAGES = ("teacher", "distill", "tune")


def processes() -> int:
    """The number of processes launched together (WORLD_SIZE, which accelerate launch and torchrun set)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def is_main() -> bool:
    return int(os.environ.get("RANK", "0") or 0) == 0


def wait_for_everyone() -> None:
    if processes() > 1:
        import torch
        from accelerate import PartialState

        # The first PartialState sets up the process group: gloo across CPU processes when there is no GPU.
        PartialState(cpu=not torch.cuda.is_available()).wait_for_everyone()


def runs_stage(name: str) -> bool:
    """Whether this process runs the stage: training stages run everywhere, the others on the main process."""
    return processes() == 1 or is_main() or name in TRAINING_STAGES


def quiet_unless_main() -> None:
    """One process speaks: the others' progress lines would repeat the main process's."""
    if not is_main():
        from edgetune.console import console

        console.quiet = True
