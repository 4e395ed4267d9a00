"""Distill: train a small student on the teacher's softened logits (and, optionally, its hidden states).

Reads: teacher/model, teacher/train_logits.npy, the recipe's data, distill.transfer (unlabeled text).
Writes: model/ (the student: AutoModelForSequenceClassification folder + its tokenizer), labels.json,
        test_logits.npy (the student's logits on the test split, in file order).

The student is a subset of the teacher's layers (DistilBERT-style init, `distill.layers`) or another
pretrained model (`distill.student`, any tokenizer: teacher and student each tokenize the raw text, so
logit distillation works across vocabularies). Loss per batch:
    alpha * T^2 * KL(teacher/T || student/T) + (1 - alpha) * CE(student, label)
    + hidden_weight * mean over mapped layers of MSE(proj(student_hidden), teacher_hidden)
Transfer texts and augmented copies of the training texts (`distill.augment`) have no label: they get the KL
term (and hidden MSE) only.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from pathlib import Path

from edgetune.augment import augment_texts
from edgetune.artifacts import resume_dir
from edgetune.console import log
from edgetune.data import encode, load_dataset, read_calibration_texts, sequence_length
from edgetune.errors import BadInput
from edgetune.models import LAYER_PARAM, check_layer_map, resolve_model
from edgetune.recipe import DistillConfig, Recipe
from edgetune.targets import Target

NO_LABEL = -100  # cross_entropy's ignore_index: transfer text


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


def pretrained_student(model: str, label_names: tuple[str, ...]):
    """Another pretrained model with a fresh head for the labels, and its own tokenizer."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    source, extra = resolve_model(model, "main", log)
    id2label = dict(enumerate(label_names))
    student = AutoModelForSequenceClassification.from_pretrained(
        source, **extra, num_labels=len(label_names), id2label=id2label,
        label2id={v: k for k, v in id2label.items()}, ignore_mismatched_sizes=True,
    )
    return student, AutoTokenizer.from_pretrained(source, **extra)


def texts_digest(texts: list[str], *settings) -> str:
    return hashlib.sha256(json.dumps([texts, settings]).encode()).hexdigest()[:16]


def memoized(path: Path, compute):
    """Teacher logits of extra texts, computed once per teacher and text set: students of several sizes and seeds
    share them (a 110M teacher labels 40k texts in minutes on CPU). Written whole or not at all."""
    import os

    import numpy as np

    if path.is_file():
        log(f"teacher logits of the extra texts: reusing {path.name}")
        return np.load(path)
    values = compute()
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, values)
    os.replace(tmp, path)
    return values


def distillation_loss(teacher_logits, cfg: DistillConfig, teacher=None, layer_map=(), projection=None):
    import torch
    import torch.nn.functional as F

    soft_targets = torch.from_numpy(teacher_logits)
    T, alpha = cfg.temperature, cfg.alpha

    def loss(model, batch, labels, ids):
        out = model(**batch, output_hidden_states=cfg.hidden_weight > 0)
        logits = out.logits.float()  # the softmax of a bf16 autocast pass loses the small probabilities KD teaches
        t = soft_targets[ids].to(logits.device) / T
        kl = F.kl_div(F.log_softmax(logits / T, -1), F.log_softmax(t, -1), log_target=True, reduction="batchmean")
        total = alpha * T**2 * kl
        if alpha < 1 and bool((labels != NO_LABEL).any()):
            total = total + (1 - alpha) * F.cross_entropy(logits, labels, ignore_index=NO_LABEL)
        if cfg.hidden_weight > 0:
            with torch.no_grad():
                teacher_hidden = teacher(**batch, output_hidden_states=True).hidden_states
            mask = batch["attention_mask"].unsqueeze(-1).to(logits.dtype)
            mse = 0.0
            for student_layer, teacher_layer in enumerate(layer_map):
                s = out.hidden_states[student_layer + 1]  # [0] is the embedding output
                s = projection(s) if projection is not None else s
                diff = (s - teacher_hidden[teacher_layer + 1]) ** 2 * mask
                mse = mse + diff.sum() / (mask.sum() * diff.shape[-1])
            total = total + cfg.hidden_weight * mse / len(layer_map)
        return total

    return loss


def hidden_projection(student, teacher, cfg: DistillConfig, source: str):
    import torch

    s_width, t_width = student.config.hidden_size, teacher.config.hidden_size
    if s_width == t_width:
        return None
    if not cfg.hidden_projection:
        raise BadInput(f"{source}: student hidden size {s_width} differs from the teacher's {t_width}; set "
                       "distill.hidden_projection: true to learn a linear map, or distill.hidden_weight: 0")
    return torch.nn.Linear(s_width, t_width)


def run(recipe: Recipe, *, inputs: dict[str, Path], out_dir: Path, target: Target) -> dict[str, float]:
    import numpy as np
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from edgetune.training import (evaluate, input_names_of, pick_device, predict_logits, resolve_precision,
                                   seed_everything, train)

    cfg = recipe.distill
    seed = recipe.seed if cfg.seed is None else cfg.seed
    seed_everything(seed)
    device = pick_device(recipe.device)
    teacher_dir = inputs["teacher"] / "model"
    teacher = AutoModelForSequenceClassification.from_pretrained(teacher_dir).eval()
    teacher_tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    data = load_dataset(recipe.data, recipe.seed)
    if cfg.student:
        student, tokenizer = pretrained_student(cfg.student, data.label_names)
        if cfg.student_layers is not None:
            check_layer_map(cfg.student_layers, student.config.num_hidden_layers, f"{recipe.source}: distill.student_layers")
            student = student_from_layers(student, cfg.student_layers)
        shared_vocab = tokenizer.get_vocab() == teacher_tokenizer.get_vocab()
        layer_map = cfg.hidden_layer_map or ()
        log(f"student: {cfg.student} ({student.config.num_hidden_layers} layers"
            + (f": its layers {list(cfg.student_layers)}" if cfg.student_layers is not None else "") + "), "
            f"{'same' if shared_vocab else 'different'} tokenizer as the teacher")
    else:
        check_layer_map(cfg.layers, teacher.config.num_hidden_layers, recipe.source)
        student, tokenizer, shared_vocab = student_from_layers(teacher, cfg.layers), teacher_tokenizer, True
        layer_map = cfg.hidden_layer_map or cfg.layers
        log(f"student: teacher layers {list(cfg.layers)} (DistilBERT-style init)")
    projection = None
    if cfg.hidden_weight > 0:
        if not shared_vocab:
            raise BadInput(f"{recipe.source}: distill.hidden_weight > 0 needs a student with the teacher's tokenizer; "
                           "across tokenizers set distill.hidden_weight: 0 (logit distillation)")
        if not layer_map or len(layer_map) != student.config.num_hidden_layers:
            raise BadInput(f"{recipe.source}: distill.hidden_layer_map needs one teacher layer per student layer "
                           f"({student.config.num_hidden_layers})")
        check_layer_map(tuple(layer_map), teacher.config.num_hidden_layers, recipe.source)
        projection = hidden_projection(student, teacher, cfg, recipe.source)
        log(f"hidden-state MSE (weight {cfg.hidden_weight}) against teacher layers {list(layer_map)}"
            + (" through a learned projection" if projection is not None else ""))

    teacher_pad, names_t = teacher_tokenizer.pad_token_id, input_names_of(teacher_tokenizer)
    texts, labels = list(data.train.texts), list(data.train.labels)
    soft = np.load(inputs["teacher"] / "train_logits.npy")
    extra: list[str] = []
    if cfg.transfer:
        extra += read_calibration_texts(Path(cfg.transfer))
        log(f"transfer: {len(extra)} unlabeled texts from {cfg.transfer}, soft-labelled by the teacher")
    if cfg.augment:
        # The mask token only means "masked" to a student that shares the teacher's tokenizer; across tokenizers
        # a masked word is dropped, so both models see the same text.
        mask = (teacher_tokenizer.mask_token or teacher_tokenizer.unk_token) if shared_vocab else ""
        # The recipe's seed, not the student's: students of every seed share the teacher's labels of these texts.
        augmented = augment_texts(texts, cfg.augment, mask, recipe.seed)
        extra += augmented
        log(f"augment: {len(augmented)} perturbed copies of the training texts, soft-labelled by the teacher")
    if extra:
        teacher.to(device)
        teacher_length = sequence_length(recipe.data, teacher_tokenizer, data.train.texts).tokens
        # The teacher's own training precision: bf16 where the CPU has it makes labelling many texts 3x cheaper.
        labelling = resolve_precision(recipe.teacher.precision, device)

        def label_extra() -> np.ndarray:
            extra_enc = encode(teacher_tokenizer, extra, [NO_LABEL] * len(extra), teacher_length)
            return predict_logits(teacher, extra_enc, teacher_pad, names_t, precision=labelling)

        memo = inputs["teacher"].parent / f"labels-{inputs['teacher'].name}-{texts_digest(extra, teacher_length, labelling)}.npy"
        soft = np.concatenate([soft, memoized(memo, label_extra)])
        texts, labels = texts + extra, labels + [NO_LABEL] * len(extra)
    if cfg.hidden_weight > 0:
        teacher.to(device).requires_grad_(False)
    else:
        teacher = None  # free it: logits are cached
    length = sequence_length(recipe.data, tokenizer, data.train.texts)
    log(length.describe())
    train_set = encode(tokenizer, texts, labels, length.tokens)
    enc = {s: encode(tokenizer, getattr(data, s).texts, getattr(data, s).labels, length.tokens)
           for s in ("validation", "test")}
    names, pad, n = input_names_of(tokenizer), tokenizer.pad_token_id, len(data.label_names)
    params = sum(p.numel() for p in student.parameters())
    log(f"student {params / 1e6:.1f}M parameters; KD temperature {cfg.temperature}, alpha {cfg.alpha}; "
        f"training on {device.type}")
    if projection is not None:
        projection.to(device)
    result = train(
        student, train_set, enc["validation"], cfg,
        distillation_loss(soft, cfg, teacher, tuple(layer_map), projection),
        pad_id=pad, input_names=names, num_labels=n, seed=seed, desc="distill",
        checkpoints=resume_dir(out_dir), device=device,
        extra_params=list(projection.parameters()) if projection is not None else None,
    )
    metrics = {"best_epoch": float(result.best_epoch), "layers": float(student.config.num_hidden_layers),
               "parameters": float(params), "transfer_texts": float(len(texts) - len(data.train.texts)),
               "max_length": float(length.tokens)}
    for split in ("validation", "test"):
        metrics.update({f"{split}_{k}": v for k, v in evaluate(student, enc[split], pad, names, n).items()})
    log(f"student test accuracy {metrics['test_accuracy']:.4f}, macro-F1 {metrics['test_macro_f1']:.4f}")
    # Test-split logits, text by text: what paired comparisons of students (benchmarks/distillation) read.
    np.save(out_dir / "test_logits.npy", predict_logits(student, enc["test"], pad, names))
    student.to("cpu").save_pretrained(out_dir / "model")
    tokenizer.save_pretrained(out_dir / "model")
    shutil.copy(inputs["teacher"] / "labels.json", out_dir / "labels.json")
    return metrics


