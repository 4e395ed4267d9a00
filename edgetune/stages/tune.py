"""Tune: LoRA on the distilled student with peft; the classifier head is trained fully.

Reads: distill/model, the recipe's data.
Writes: adapter/ (a peft folder: PeftModel.from_pretrained(student, "adapter") loads it), labels.json.
Early stopping starts from the student itself, so tuning never ships a model worse on validation.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from edgetune.artifacts import resume_dir
from edgetune.console import log
from edgetune.data import encode, load_dataset, sequence_length
from edgetune.errors import BadInput
from edgetune.recipe import Recipe
from edgetune.targets import Target


def head_name(model) -> str:
    for name in ("classifier", "score", "classification_head"):
        if hasattr(model, name):
            return name
    raise BadInput(f"{type(model).__name__}: no classifier/score head found for LoRA's modules_to_save")


def lora_model(student, cfg):
    from peft import LoraConfig, get_peft_model

    linear_names = {name.rsplit(".", 1)[-1] for name, module in student.named_modules() if type(module).__name__ == "Linear"}
    unknown = [m for m in cfg.target_modules if m not in linear_names]
    if unknown:
        raise BadInput(f"tune.target_modules: {unknown} are not Linear modules of the student; "
                       f"choose from {sorted(linear_names)}")
    config = LoraConfig(
        task_type="SEQ_CLS", r=cfg.r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.target_modules), modules_to_save=[head_name(student)],
    )
    return get_peft_model(student, config)


def run(recipe: Recipe, *, inputs: dict[str, Path], out_dir: Path, target: Target) -> dict[str, float]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from edgetune.training import cross_entropy, evaluate, input_names_of, pick_device, seed_everything, train

    seed_everything(recipe.seed)
    student_dir = inputs["distill"] / "model"
    student = AutoModelForSequenceClassification.from_pretrained(student_dir)
    tokenizer = AutoTokenizer.from_pretrained(student_dir)
    model = lora_model(student, recipe.tune)
    trainable, total = model.get_nb_trainable_parameters()
    log(f"LoRA r={recipe.tune.r} on {list(recipe.tune.target_modules)}: {trainable / 1e3:.0f}k of {total / 1e6:.1f}M "
        "parameters trainable")
    data = load_dataset(recipe.data, recipe.seed)
    length = sequence_length(recipe.data, tokenizer, data.train.texts).tokens
    enc = {s: encode(tokenizer, getattr(data, s).texts, getattr(data, s).labels, length)
           for s in ("train", "validation", "test")}
    names, pad, n = input_names_of(tokenizer), tokenizer.pad_token_id, len(data.label_names)
    result = train(
        model, enc["train"], enc["validation"], recipe.tune, cross_entropy,
        pad_id=pad, input_names=names, num_labels=n, seed=recipe.seed, desc="tune",
        checkpoints=resume_dir(out_dir), evaluate_start=True,
        device=pick_device(recipe.device),
    )
    if result.best_epoch == 0:
        log("LoRA did not improve validation over the distilled student: the adapter keeps the student as is")
    metrics = {"best_epoch": float(result.best_epoch), "trainable_parameters": float(trainable)}
    for split in ("validation", "test"):
        metrics.update({f"{split}_{k}": v for k, v in evaluate(model, enc[split], pad, names, n).items()})
    log(f"tuned student test accuracy {metrics['test_accuracy']:.4f}, macro-F1 {metrics['test_macro_f1']:.4f}")
    model.to("cpu").save_pretrained(out_dir / "adapter")
    tokenizer.save_pretrained(out_dir / "adapter")
    shutil.copy(inputs["distill"] / "labels.json", out_dir / "labels.json")
    return metrics
