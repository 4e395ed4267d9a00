"""What bounds a 110M teacher's fine-tune on CPU: seconds per training step under each setting, side by side.

    python benchmarks/distillation/teacher_cost.py [--model sentence-transformers/all-mpnet-base-v2] [--rounds 5]

One optimizer step (forward, backward, AdamW) of the teacher at batch 32 on real Banking77-length inputs, for
fp32 / bf16 autocast and 0 / 6 / 9 frozen lower layers (plus the embeddings), timed round-robin (A B C ... A B C)
so load on a shared host hits every setting alike; the median per setting is reported with its ratio to fp32
with nothing frozen. The settings are edgetune's own (training.autocast, training.freeze_lower_layers).
Beside them, what teaching the student online would cost (attention-relation or hidden-state transfer need the
teacher's forward pass on every student batch; logit KD reads cached logits): the teacher's no-grad bf16 forward
against one step of the 3-layer student (layers 0, 2, 5 of all-MiniLM-L6-v2), same batch, same rounds.
Writes benchmarks/results/teacher_cost.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from edgetune.console import log
from edgetune.runtime import cpu_model_and_flags
from edgetune.stages.distill import student_from_layers
from edgetune.models import resolve_model
from edgetune.training import autocast, cpu_has_native_bf16, freeze_lower_layers

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
SETTINGS = [(p, f) for f in (0, 6, 9) for p in ("fp32", "bf16")]


def main() -> None:
    from transformers import AutoModelForSequenceClassification

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sentence-transformers/all-mpnet-base-v2")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=24, help="padded batch length (Banking77's median batch)")
    args = parser.parse_args()
    torch.manual_seed(0)
    source, extra = resolve_model(args.model, "main", log)
    models = {}
    for precision, frozen in SETTINGS:
        model = AutoModelForSequenceClassification.from_pretrained(source, **extra, num_labels=77)
        model.get_input_embeddings().weight.requires_grad_(False)  # edgetune's default: freeze_word_embeddings
        freeze_lower_layers(model, frozen)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        models[(precision, frozen)] = (model.train(), optimizer)
    student_source, student_extra = resolve_model("sentence-transformers/all-MiniLM-L6-v2", "main", log)
    student = AutoModelForSequenceClassification.from_pretrained(student_source, **student_extra, num_labels=77)
    student = student_from_layers(student, (0, 2, 5)).train()
    student_optimizer = torch.optim.AdamW(student.parameters(), lr=1e-4)
    teacher = models[("bf16", 0)][0]
    ids = torch.randint(1000, 20000, (32, args.tokens))
    labels = torch.randint(0, 77, (32,))

    def step(precision: str, frozen: int) -> float:
        model, optimizer = models[(precision, frozen)]
        start = time.perf_counter()
        with autocast(torch.device("cpu"), precision):
            loss = torch.nn.functional.cross_entropy(model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.float(), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    def student_step() -> float:
        start = time.perf_counter()
        with autocast(torch.device("cpu"), "bf16"):
            loss = torch.nn.functional.cross_entropy(student(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.float(), labels)
        loss.backward()
        student_optimizer.step()
        student_optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    def teacher_forward() -> float:
        start = time.perf_counter()
        with torch.no_grad(), autocast(torch.device("cpu"), "bf16"):
            teacher.eval()(input_ids=ids, attention_mask=torch.ones_like(ids), output_attentions=True)
        teacher.train()
        return time.perf_counter() - start

    online = {"student_step": student_step, "teacher_forward": teacher_forward}
    for setting in SETTINGS:  # warm-up: first steps allocate optimizer state and pick kernels
        step(*setting)
    for measure in online.values():
        measure()
    times = {s: [] for s in SETTINGS}
    online_times = {name: [] for name in online}
    for _ in range(args.rounds):
        for setting in SETTINGS:
            times[setting].append(step(*setting))
        for name, measure in online.items():
            online_times[name].append(measure())
    base = np.median(times[("fp32", 0)])
    rows = [{"precision": p, "frozen_layers": f, "median_s": float(np.median(times[(p, f)])),
             "speedup_vs_fp32": float(base / np.median(times[(p, f)])), "samples": times[(p, f)]} for p, f in SETTINGS]
    cpu = cpu_model_and_flags()[0]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "teacher_cost.json").write_text(json.dumps(
        {"model": args.model, "batch": 32, "tokens": args.tokens, "rounds": args.rounds, "cpu": cpu,
         "native_bf16": cpu_has_native_bf16(), "threads": torch.get_num_threads(), "rows": rows,
         "online": {name: {"median_s": float(np.median(t)), "samples": t} for name, t in online_times.items()}},
        indent=1))
    lines = [f"# Teacher fine-tune cost: {args.model}", "",
             f"`python benchmarks/distillation/teacher_cost.py`: one training step at batch 32 x {args.tokens} tokens "
             f"on {cpu} ({torch.get_num_threads()} threads, native bf16: {cpu_has_native_bf16()}), word embeddings "
             f"frozen as edgetune does by default; median of {args.rounds} round-robin steps per setting.", "",
             "| precision | frozen lower layers | s / step | speed-up vs fp32, none frozen |", "|---|---|---|---|"]
    lines += [f"| {r['precision']} | {r['frozen_layers']} | {r['median_s']:.3f} | {r['speedup_vs_fp32']:.2f}x |"
              for r in rows]
    student_s, teacher_s = (float(np.median(online_times[k])) for k in ("student_step", "teacher_forward"))
    lines += ["", "Online teaching (the teacher runs on every student batch, as attention-relation transfer needs): "
              f"3-layer student step {student_s:.3f} s, teacher bf16 forward {teacher_s:.3f} s: "
              f"{(student_s + teacher_s) / student_s:.1f}x the student's step time."]
    (RESULTS / "teacher_cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
