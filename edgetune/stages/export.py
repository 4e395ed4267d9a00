"""Export: merge the LoRA adapter into the student, optionally prune its vocabulary, export ONNX, validate it.

Reads: distill/model, tune/adapter, the recipe's test split (real inputs for validation); with
       export.prune_vocab, the train and validation splits (the tokens to keep).
Writes: merged/ (AutoModelForSequenceClassification folder), model.onnx (dynamic batch and sequence
        axes), tokenizer files and labels.json beside it (all with the pruned vocabulary when pruning).
Validation: the largest |onnx - torch| logit difference on real padded batches must not exceed
export.atol, else the stage fails. With pruning, the pruned ONNX model read through the bundle's tokenizer
path (tokenizers' Tokenizer.from_file) must predict the unpruned model's label on at least
export.prune_min_match of the test split, and that tokenizer must give the transformers tokenizer's ids.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from edgetune.console import log
from edgetune.data import encode, load_dataset, pad_batch, sequence_length
from edgetune.errors import StageFailed
from edgetune.recipe import Recipe
from edgetune.targets import Target


def merged_model(student_dir: Path, adapter_dir: Path):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    student = AutoModelForSequenceClassification.from_pretrained(student_dir)
    return PeftModel.from_pretrained(student, adapter_dir).merge_and_unload().eval()


def export_onnx(model, names: tuple[str, ...], path: Path, opset: int, sample: dict) -> None:
    import torch

    dynamic = {name: {0: "batch", 1: "sequence"} for name in names} | {"logits": {0: "batch"}}
    if getattr(model.config, "_attn_implementation", "eager") != "eager" and hasattr(model, "set_attn_implementation"):
        # transformers' default SDPA attention exports with Where/IsNaN masking that onnxruntime's attention fusion
        # does not recognise; eager attention computes the same (1e-6 here) and fuses into one Attention op
        # (int8 dynamic p50 0.96 -> 0.80 ms on the demo model, 2 threads).
        model.set_attn_implementation("eager")
    # The TorchScript exporter: seconds instead of the dynamo exporter's tens of seconds, and its graphs
    # match onnxruntime's transformer-fusion patterns (attention, LayerNorm, GELU).
    torch.onnx.export(
        model, (), str(path), kwargs={n: torch.from_numpy(sample[n]) for n in names},
        input_names=list(names), output_names=["logits"], dynamic_axes=dynamic, opset_version=opset, dynamo=False,
    )


def max_difference(model, onnx_path: Path, names, batches: list[dict]) -> float:
    import numpy as np
    import torch

    from edgetune import runtime

    session = runtime.open_session(onnx_path, threads=0)  # 0: one thread per core
    worst = 0.0
    with torch.no_grad():
        for batch in batches:
            reference = model(**{n: torch.from_numpy(batch[n]) for n in names}).logits.numpy()
            (got,) = session.run(["logits"], {n: batch[n] for n in names})
            worst = max(worst, float(np.abs(got - reference).max()))
    return worst


def torch_predictions(model, tokenizer, texts, names, max_length: int, batch_size: int = 64):
    import numpy as np
    import torch

    rows = encode(tokenizer, texts, [0] * len(texts), max_length).input_ids
    out = []
    with torch.no_grad():
        for i in range(0, len(rows), batch_size):
            batch = pad_batch(rows[i : i + batch_size], tokenizer.pad_token_id)
            out.append(model(**{n: torch.from_numpy(batch[n]) for n in names}).logits.argmax(-1).numpy())
    return np.concatenate(out)


def prune_vocabulary(model, tokenizer, data, recipe: Recipe, scratch: Path) -> tuple[object, dict[str, float]]:
    """Prune the model's embedding and the tokenizer to the tokens train+validation use. Returns (tokenizer, stats)."""
    from transformers import AutoTokenizer

    from edgetune import vocab

    spec = vocab.check_wordpiece(scratch / "original" / "tokenizer.json", f"{recipe.source}: export.prune_vocab")
    texts = list(data.train.texts) + list(data.validation.texts)
    used = {i for ids in tokenizer(texts, add_special_tokens=False)["input_ids"] for i in ids}
    kept = vocab.kept_ids(spec, used, recipe.export.prune_keep_first)
    original = len(spec["model"]["vocab"])
    vocab.prune_tokenizer_folder(scratch / "original", scratch / "pruned", kept)
    removed = vocab.prune_embeddings(model, kept)
    extra = f", the first {recipe.export.prune_keep_first} ordinary tokens" if recipe.export.prune_keep_first else ""
    log(f"vocabulary pruned to {len(kept)} of {original} tokens ({len(used)} used by train+validation, special and "
        f"single-character pieces{extra}): {removed / 1e6:.1f} MB of fp32 embedding rows removed")
    pruned = AutoTokenizer.from_pretrained(scratch / "pruned")
    return pruned, {"pruned_vocab_size": float(len(kept)), "original_vocab_size": float(original),
                    "vocab_bytes_saved": float(removed)}


def check_pruned(onnx_path: Path, tokenizer_json: Path, tokenizer, texts: list[str], reference, max_length: int) -> float:
    """Test-split match rate of the pruned model run the way the bundle runs it (tokenizers' Tokenizer.from_file).

    Fails the stage when that tokenizer and the transformers one give different ids for a test text.
    """
    import numpy as np
    from tokenizers import Tokenizer

    from edgetune import runtime

    shipped = Tokenizer.from_file(str(tokenizer_json))
    shipped.enable_truncation(max_length)
    expected = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    differ = [t for t, a, b in zip(texts, expected, shipped.encode_batch(texts)) if list(a) != b.ids]
    if differ:
        raise StageFailed(f"vocabulary pruning: the bundle's tokenizer ({tokenizer_json.name} read by tokenizers) and "
                          f"the transformers tokenizer disagree on {len(differ)} test texts, e.g. {differ[0]!r}")
    shipped.enable_padding(pad_id=tokenizer.pad_token_id, pad_token=tokenizer.pad_token)
    session = runtime.open_session(onnx_path, threads=0)  # 0: one thread per core
    return float(np.mean(runtime.logits(texts, shipped, session, 64).argmax(-1) == reference))


def run(recipe: Recipe, *, inputs: dict[str, Path], out_dir: Path, target: Target) -> dict[str, float]:
    import warnings

    from transformers import AutoTokenizer

    from edgetune.training import input_names_of

    model = merged_model(inputs["distill"] / "model", inputs["tune"] / "adapter")
    tokenizer = AutoTokenizer.from_pretrained(inputs["tune"] / "adapter")
    names = input_names_of(tokenizer)
    data = load_dataset(recipe.data, recipe.seed)
    max_length = sequence_length(recipe.data, tokenizer, data.train.texts).tokens
    pruning: dict[str, float] = {}
    if recipe.export.prune_vocab:
        from edgetune.vocab import check_wordpiece

        scratch = out_dir / "vocab-scratch"
        tokenizer.save_pretrained(scratch / "original")
        check_wordpiece(scratch / "original" / "tokenizer.json", f"{recipe.source}: export.prune_vocab")
        reference = torch_predictions(model, tokenizer, data.test.texts, names, max_length)
        tokenizer, pruning = prune_vocabulary(model, tokenizer, data, recipe, scratch)
        shutil.rmtree(scratch)
    model.save_pretrained(out_dir / "merged")
    tokenizer.save_pretrained(out_dir / "merged")
    test = encode(tokenizer, data.test.texts, data.test.labels, max_length)
    rows = test.input_ids[: recipe.export.validation_samples]
    batches = [pad_batch(rows[i : i + 16], tokenizer.pad_token_id) for i in range(0, len(rows), 16)]
    batches.append(pad_batch(rows[:1], tokenizer.pad_token_id))  # batch 1: the shape an edge device runs
    onnx_path = out_dir / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(model, names, onnx_path, recipe.export.opset, batches[0])
    worst = max_difference(model, onnx_path, names, batches)
    log(f"ONNX vs PyTorch on {len(rows)} test inputs: max |logit difference| {worst:.2e} (atol {recipe.export.atol:g})")
    if worst > recipe.export.atol:
        raise StageFailed(
            f"export validation failed: max |onnx - torch| logit difference {worst:.3e} exceeds "
            f"export.atol={recipe.export.atol:g}; raise export.atol in {recipe.source} if that difference is acceptable"
        )
    tokenizer.save_pretrained(out_dir)
    if recipe.export.prune_vocab:
        match = check_pruned(onnx_path, out_dir / "tokenizer.json", tokenizer, list(data.test.texts), reference,
                             max_length)
        pruning["prune_match_rate"] = match
        log(f"pruned vs unpruned model on {len(data.test.texts)} test texts: {match:.2%} identical predictions "
            f"(export.prune_min_match {recipe.export.prune_min_match:g})")
        if match < recipe.export.prune_min_match:
            raise StageFailed(
                f"vocabulary pruning changed {round((1 - match) * len(data.test.texts))} of {len(data.test.texts)} test "
                f"predictions: match rate {match:.4f} < export.prune_min_match={recipe.export.prune_min_match:g}; "
                f"keep the commonest words too with export.prune_keep_first (e.g. 10000), lower export.prune_min_match, "
                f"or set export.prune_vocab: false in {recipe.source}"
            )
    shutil.copy(inputs["tune"] / "labels.json", out_dir / "labels.json")
    return {"max_abs_diff": worst, "size_bytes": float(onnx_path.stat().st_size), "opset": float(recipe.export.opset),
            **pruning}
