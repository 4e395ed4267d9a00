"""One training loop for teacher, student and LoRA, run through accelerate: length-grouped batches, gradient
accumulation, linear schedule, early stopping, a checkpoint per epoch to resume from."""

from __future__ import annotations

import contextlib
import copy
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from edgetune import checkpoints as checkpoints_module
from edgetune.console import progress, log
from edgetune.data import Encoded, length_grouped_batches, pad_batch
from edgetune.metrics import classification_scores
from edgetune.models import LAYER_PARAM
from edgetune.recipe import TrainingConfig


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.set_num_threads(training_threads())


def training_threads() -> int:
    """OMP_NUM_THREADS when set, else the CPUs this process may use (affinity and cgroup quota, not the machine's).
    On a host shared with other jobs, one thread per process avoids every op waiting at a barrier for a
    descheduled sibling thread (a MiniLM-L6 step took 2-3x longer with two threads than with one there)."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    from edgetune.runtime import usable_cpus

    return usable_cpus()


def to_torch(batch: dict, input_names: tuple[str, ...], device="cpu") -> dict[str, torch.Tensor]:
    return {name: torch.from_numpy(batch[name]).to(device) for name in input_names}


def pick_device(requested: str) -> torch.device:
    """auto: CUDA when there is a GPU, else CPU. Asking for cuda without one is an error, not a fallback."""
    if requested == "cuda" and not torch.cuda.is_available():
        from edgetune.errors import BadInput

        raise BadInput("device: cuda was requested but torch sees no CUDA GPU; use device: auto or cpu")
    return torch.device("cuda" if requested in ("auto", "cuda") and torch.cuda.is_available() else "cpu")


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 matmuls run at up to twice fp32's rate. Without them bf16 is emulated and slower."""
    from edgetune.host import cpu_model_and_flags

    flags = cpu_model_and_flags()[1]  # empty where /proc/cpuinfo is missing: fp32 then
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(requested: str, device: torch.device) -> str:
    """auto -> bf16 where the hardware computes it natively; fp16 only on CUDA GPUs without bf16."""
    if requested != "auto":
        return requested
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def autocast(device: torch.device, precision: str = "fp32"):
    """Mixed precision for the forward pass; weights, gradients' accumulation and optimizer state stay fp32."""
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def freeze_lower_layers(model, count: int) -> None:
    """Freeze the embeddings and transformer layers 0..count-1 (matched by parameter name, any architecture)."""
    if count <= 0:
        return
    for name, param in model.named_parameters():
        match = LAYER_PARAM.match(name)
        if ".embeddings." in f".{name}" or (match and int(match[2]) < count):
            param.requires_grad_(False)


def input_names_of(tokenizer) -> tuple[str, ...]:
    return tuple(n for n in ("input_ids", "attention_mask", "token_type_ids") if n in tokenizer.model_input_names)


@torch.no_grad()
def predict_logits(model, encoded: Encoded, pad_id: int, input_names, batch_size: int = 64,
                   precision: str = "fp32") -> np.ndarray:
    model.eval()
    device = next(model.parameters()).device
    order = np.argsort(encoded.lengths())  # similar lengths together: less padding
    out = np.zeros((len(order), model.config.num_labels), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        ids = order[start : start + batch_size]
        batch = pad_batch([encoded.input_ids[i] for i in ids], pad_id)
        with autocast(device, precision):
            out[ids] = model(**to_torch(batch, input_names, device)).logits.float().cpu().numpy()
    return out


def evaluate(model, encoded: Encoded, pad_id: int, input_names, num_labels: int) -> dict[str, float]:
    logits = predict_logits(model, encoded, pad_id, input_names)
    return classification_scores(encoded.labels, logits.argmax(-1), num_labels)


# loss_fn(model, batch, labels, example_indices) -> scalar loss. The loss runs the forward pass itself, so
# distillation can ask for hidden states and look up cached teacher logits by example index.
LossFn = Callable[[torch.nn.Module, dict, torch.Tensor, list[int]], torch.Tensor]


def cross_entropy(model, batch, labels, ids):
    return torch.nn.functional.cross_entropy(model(**batch).logits, labels)


@dataclass
class TrainResult:
    best_epoch: int  # 0: training never beat the starting point
    epochs_run: int
    steps: int  # optimizer steps taken
    validation: dict[str, float]
    processes: int = 1
    resumed_from: int = 0  # the epoch whose checkpoint training resumed after (0: started afresh)


def train(
    model,
    train_set: Encoded,
    val_set: Encoded,
    cfg: TrainingConfig,
    loss_fn: LossFn,
    *,
    pad_id: int,
    input_names: tuple[str, ...],
    num_labels: int,
    seed: int,
    desc: str,
    evaluate_start: bool = False,
    device: torch.device | None = None,
    extra_params: list | None = None,
    checkpoints: Path | None = None,
) -> TrainResult:
    """Train in place; on return `model` holds the weights of the best validation epoch.

    accelerate places the model and, under `accelerate launch`/torchrun, wraps it for data-parallel training
    (each process trains on its share of each epoch's batches; every process validates the whole split, so all
    stop at the same epoch). `extra_params`: trained with the model but not part of it (e.g. a hidden-state
    projection). `checkpoints`: a folder where each epoch's state is saved, and from which training resumes.
    """
    rng = random.Random(seed)
    accelerator, model, core, precision = _prepare(model, cfg, device or torch.device("cpu"), desc)
    extra = list(extra_params or [])
    for param in extra:
        param.data = param.data.to(accelerator.device)
    params = [p for p in core.parameters() if p.requires_grad] + extra
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    world, rank, accumulate = accelerator.num_processes, accelerator.process_index, cfg.gradient_accumulation_steps
    share, total = _budget(len(train_set.labels), cfg, world, desc)
    schedule = _linear_schedule(optimizer, total, cfg.warmup_ratio)

    def score() -> tuple:
        m = evaluate(core, val_set, pad_id, input_names, num_labels)
        return (m["accuracy"], m["macro_f1"]), m

    state, best_state = checkpoints_module.Progress(), None
    saved = checkpoints_module.load(checkpoints, desc, accelerator.num_processes)
    if saved is not None:
        state, best_state = checkpoints_module.restore(saved, model=core, extra_params=extra, optimizer=optimizer,
                                                       schedule=schedule, rng=rng)
        log(f"{desc}: resuming after epoch {state.epoch} (step {state.step}) from its checkpoint")
    elif evaluate_start:
        state.best_key, state.best_metrics = score()
    best_state = best_state or copy.deepcopy(core.state_dict())
    resumed_from, last_saved = state.epoch, time.monotonic()
    lengths = train_set.lengths()

    def batch_of(ids):
        batch = to_torch(pad_batch([train_set.input_ids[i] for i in ids], pad_id), input_names, accelerator.device)
        return batch, torch.tensor([train_set.labels[i] for i in ids], device=accelerator.device)

    with progress() as bar:
        task = bar.add_task(desc, total=total, completed=state.step)
        while not _finished(state, cfg, total):
            state.epoch += 1
            model.train()
            epoch_batches = length_grouped_batches(lengths, cfg.batch_size, rng)
            shard = epoch_batches[rank : world * share : world]
            for start in range(0, len(shard), accumulate):
                if state.step == total:  # max_steps reached mid-epoch: validate what was trained so far
                    break
                loss = _optimizer_step(accelerator, model, shard[start : start + accumulate], batch_of, loss_fn,
                                       precision, scaler, optimizer, schedule, params, extra)
                state.step += 1
                bar.update(task, advance=1, description=f"{desc} epoch {state.epoch} loss {loss:.3f}")
            key, metrics = score()
            if key > state.best_key:
                state.best_key, state.best_metrics, state.best_epoch, state.stale = key, metrics, state.epoch, 0
                best_state = copy.deepcopy(core.state_dict())
            else:
                state.stale += 1
            log(f"{desc} epoch {state.epoch}: validation accuracy {metrics['accuracy']:.4f} "
                f"macro-F1 {metrics['macro_f1']:.4f}")
            due = time.monotonic() - last_saved >= checkpoints_module.min_seconds()
            if checkpoints is not None and due and accelerator.is_main_process and not _finished(state, cfg, total):
                last_saved = time.monotonic()
                checkpoints_module.save(checkpoints, desc=desc, processes=world, model=core, extra_params=extra,
                                        optimizer=optimizer, schedule=schedule, rng=rng, progress=state,
                                        best_state=best_state)
            accelerator.wait_for_everyone()
            if state.stale >= cfg.patience and state.step < total and state.epoch < cfg.epochs:
                log(f"{desc}: early stop after epoch {state.epoch} (no improvement for {cfg.patience} epochs)")
    core.load_state_dict(best_state)
    return TrainResult(best_epoch=state.best_epoch, epochs_run=state.epoch, steps=state.step,
                       validation=state.best_metrics, processes=world, resumed_from=resumed_from)


def _prepare(model, cfg: TrainingConfig, device: torch.device, desc: str):
    """The accelerator, the model it wraps (DDP across processes; the model itself in one), the model, and the
    autocast precision. Freezing comes first: DDP syncs only the parameters that train."""
    from accelerate import Accelerator

    # Mixed precision stays edgetune's own autocast: accelerate's would patch the model's forward for evaluation
    # too (edgetune evaluates in fp32), and its process-wide state cannot change precision between stages.
    accelerator = Accelerator(cpu=device.type == "cpu", mixed_precision="no")
    if cfg.freeze_word_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    freeze_lower_layers(model, cfg.freeze_layers)
    precision = resolve_precision(cfg.precision, accelerator.device)
    if precision != "fp32":
        log(f"{desc}: {precision} autocast on {accelerator.device.type}")
    core = model.to(accelerator.device)
    return accelerator, accelerator.prepare_model(core), core, precision


def _budget(examples: int, cfg: TrainingConfig, world: int, desc: str) -> tuple[int, int]:
    """Batches each process trains on per epoch, and the optimizer steps of the whole run."""
    from edgetune.errors import BadInput

    batches = -(-examples // cfg.batch_size)
    share = batches // world if world > 1 else batches  # the remainder (< world batches an epoch) is dropped
    if share == 0:
        raise BadInput(f"{desc}: {batches} batch(es) of {cfg.batch_size} an epoch cannot be shared by {world} "
                       "processes; run fewer processes or lower batch_size")
    accumulate = cfg.gradient_accumulation_steps
    steps_per_epoch = -(-share // accumulate)
    total = steps_per_epoch * cfg.epochs
    if world > 1 or accumulate > 1:
        log(f"{desc}: {world} process(es) x {accumulate} accumulated batch(es) of {cfg.batch_size}: "
            f"{world * accumulate * cfg.batch_size} texts per optimizer step")
    if cfg.max_steps is not None and cfg.max_steps < total:
        total = cfg.max_steps
        log(f"{desc}: max_steps {total} stops training after {total / steps_per_epoch:.1f} of {cfg.epochs} epochs")
    return share, total


def _linear_schedule(optimizer, total: int, warmup_ratio: float):
    warmup = int(total * warmup_ratio)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / max(1, warmup) if s < warmup else max(0.0, (total - s) / max(1, total - warmup))
    )


def _finished(state, cfg: TrainingConfig, total: int) -> bool:
    return state.epoch >= cfg.epochs or state.step >= total or state.stale >= cfg.patience


def _optimizer_step(accelerator, model, group, batch_of, loss_fn, precision, scaler, optimizer, schedule,
                    params, extra) -> float:
    """One optimizer step over `group`'s batches (gradient accumulation); gradients sync across processes once,
    on the last batch."""
    device = accelerator.device
    for i, ids in enumerate(group):
        batch, labels = batch_of(ids)
        with contextlib.nullcontext() if i == len(group) - 1 else accelerator.no_sync(model):
            with autocast(device, precision):
                loss = loss_fn(model, batch, labels, ids)
            accelerator.backward(scaler.scale(loss / len(group)))
    if extra and accelerator.num_processes > 1:  # not inside the DDP module: average their gradients here
        for param in extra:
            if param.grad is not None:
                param.grad = accelerator.reduce(param.grad, reduction="mean")
    scaler.unscale_(optimizer)
    accelerator.clip_grad_norm_(params, 1.0)
    scaler.step(optimizer)
    scaler.update()
    schedule.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()
