"""Distill: a student made of a subset of the teacher's layers, trained on the teacher's softened logits.

Reads: teacher/model, teacher/train_logits.npy, the recipe's data.
Writes: model/ (the student: AutoModelForSequenceClassification folder + tokenizer), labels.json.
Loss: alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)) + (1 - alpha) * CE(student, label).
"""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path

from edgetune.console import log
from edgetune.data import encode, load_dataset
from edgetune.models import check_layer_map
from edgetune.recipe import Recipe
from edgetune.targets import Target

# Parameter names of the stacked transformer layers: "bert.encoder.layer.3.attention...".
LAYER_PARAM = re.compile(r"^(.*\.layers?\.)(\d+)(\..*)$")


def student_from_layers(teacher, layers: tuple[int, ...]):
    """DistilBERT-style init: copy embeddings, head and the chosen layers (renumbered) from the teacher."""
    from transformers import AutoModelForSequenceClassification

    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(layers)
    student = AutoModelForSequenceClassification.from_config(config)
    renumber = {old: new for new, old in enumerate(layers)}
    state = {}
    for name, tensor in teacher.state_dict().items():
        match = LAYER_PARAM.match(name)
        if match is None:
            state[name] = tensor
        elif int(match[2]) in renumber:
            state[f"{match[1]}{renumber[int(match[2])]}{match[3]}"] = tensor
    student.load_state_dict(state, strict=True)
    return student


def kd_loss(teacher_logits, temperature: float, alpha: float):
    import torch
    import torch.nn.functional as F

    soft_targets = torch.from_numpy(teacher_logits)

    def loss(logits, labels, ids):
        t = soft_targets[ids] / temperature
        kl = F.kl_div(F.log_softmax(logits / temperature, -1), F.log_softmax(t, -1), log_target=True, reduction="batchmean")
        return alpha * temperature**2 * kl + (1 - alpha) * F.cross_entropy(logits, labels)

    return loss


def run(recipe: Recipe, *, inputs: dict[str, Path], out_dir: Path, target: Target) -> dict[str, float]:
    import numpy as np
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from edgetune.training import evaluate, input_names_of, seed_everything, train

    seed_everything(recipe.seed)
    cfg = recipe.distill
    teacher_dir = inputs["teacher"] / "model"
    teacher = AutoModelForSequenceClassification.from_pretrained(teacher_dir)
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    check_layer_map(cfg.layers, teacher.config.num_hidden_layers, recipe.source)
    student = student_from_layers(teacher, cfg.layers)
    del teacher
    data = load_dataset(recipe.data, recipe.seed)
    enc = {s: encode(tokenizer, getattr(data, s).texts, getattr(data, s).labels, recipe.data.max_length)
           for s in ("train", "validation", "test")}
    teacher_logits = np.load(inputs["teacher"] / "train_logits.npy")
    names, pad, n = input_names_of(tokenizer), tokenizer.pad_token_id, len(data.label_names)
    params = sum(p.numel() for p in student.parameters())
    log(f"student: teacher layers {list(cfg.layers)}, {params / 1e6:.1f}M parameters; "
        f"KD temperature {cfg.temperature}, alpha {cfg.alpha}")
    result = train(
        student, enc["train"], enc["validation"], cfg, kd_loss(teacher_logits, cfg.temperature, cfg.alpha),
        pad_id=pad, input_names=names, num_labels=n, seed=recipe.seed, desc="distill",
    )
    metrics = {"best_epoch": float(result.best_epoch), "layers": float(len(cfg.layers)), "parameters": float(params)}
    for split in ("validation", "test"):
        metrics.update({f"{split}_{k}": v for k, v in evaluate(student, enc[split], pad, names, n).items()})
    log(f"student test accuracy {metrics['test_accuracy']:.4f}, macro-F1 {metrics['test_macro_f1']:.4f}")
    student.save_pretrained(out_dir / "model")
    tokenizer.save_pretrained(out_dir / "model")
    shutil.copy(inputs["teacher"] / "labels.json", out_dir / "labels.json")
    return metrics
