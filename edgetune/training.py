"""One training loop for teacher, student and LoRA: length-grouped batches, linear schedule, early stopping."""

from __future__ import annotations

import copy
import os
import random
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

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
) -> TrainResult:
    """Train in place; on return `model` holds the weights of the best validation epoch.

    `extra_params`: trained with the model but not part of it (e.g. a hidden-state projection).
    """
    rng = random.Random(seed)
    device = device or torch.device("cpu")
    model.to(device)
    if cfg.freeze_word_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    freeze_lower_layers(model, cfg.freeze_layers)
    precision = resolve_precision(cfg.precision, device)
    if precision != "fp32":
        log(f"{desc}: {precision} autocast on {device.type}")
    params = [p for p in model.parameters() if p.requires_grad] + list(extra_params or [])
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    steps_per_epoch = -(-len(train_set.labels) // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    if cfg.max_steps is not None and cfg.max_steps < total:
        total = cfg.max_steps
        log(f"{desc}: max_steps {total} stops training after {total / steps_per_epoch:.1f} of {cfg.epochs} epochs")
    warmup = int(total * cfg.warmup_ratio)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / max(1, warmup) if s < warmup else max(0.0, (total - s) / max(1, total - warmup))
    )

    def score() -> tuple:
        m = evaluate(model, val_set, pad_id, input_names, num_labels)
        return (m["accuracy"], m["macro_f1"]), m

    best_key, best_metrics = score() if evaluate_start else ((-1.0, -1.0), {})
    best_state, best_epoch, stale, epoch, step = copy.deepcopy(model.state_dict()), 0, 0, 0, 0
    lengths = train_set.lengths()
    with progress() as bar:
        task = bar.add_task(desc, total=total)
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            for ids in length_grouped_batches(lengths, cfg.batch_size, rng):
                if step == total:  # max_steps reached mid-epoch: validate what was trained so far
                    break
                step += 1
                batch = to_torch(pad_batch([train_set.input_ids[i] for i in ids], pad_id), input_names, device)
                labels = torch.tensor([train_set.labels[i] for i in ids], device=device)
                with autocast(device, precision):
                    loss = loss_fn(model, batch, labels, ids)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                scaler.step(optimizer)
                scaler.update()
                schedule.step()
                bar.update(task, advance=1, description=f"{desc} epoch {epoch} loss {loss.item():.3f}")
            key, metrics = score()
            if key > best_key:
                best_key, best_metrics, best_state, best_epoch, stale = key, metrics, copy.deepcopy(model.state_dict()), epoch, 0
            else:
                stale += 1
            log(f"{desc} epoch {epoch}: validation accuracy {metrics['accuracy']:.4f} macro-F1 {metrics['macro_f1']:.4f}")
            if step == total:
                break
            if stale >= cfg.patience:
                log(f"{desc}: early stop after epoch {epoch} (no improvement for {cfg.patience} epochs)")
                break
    model.load_state_dict(best_state)
    return TrainResult(best_epoch=best_epoch, epochs_run=epoch, steps=step, validation=best_metrics)
