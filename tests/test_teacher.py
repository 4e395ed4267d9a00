"""A teacher that already has a trained head for the data's labels is used as is, whatever its label order."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgetune.data import load_dataset
from edgetune.recipe import load_recipe
from helpers import build, cache_entries


def teacher_with_head(base: str, folder, label_order: list[str]):
    """The tiny teacher with a (randomly initialised, but declared) classification head for `label_order`."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=len(label_order), id2label=dict(enumerate(label_order)),
        label2id={label: i for i, label in enumerate(label_order)},
    )
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    return model.eval()


def logits_by_label(model_dir, texts) -> dict[str, np.ndarray]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    batch = AutoTokenizer.from_pretrained(model_dir)(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits.numpy()
    return {model.config.id2label[i]: logits[:, i] for i in range(logits.shape[1])}


@pytest.mark.parametrize("order", ["sorted", "reversed"])
def test_teacher_with_a_trained_head_for_the_labels_is_not_fine_tuned(make_recipe, tiny_teacher, tmp_path, order):
    recipe = make_recipe()
    labels = list(load_dataset(load_recipe(recipe).data, 0).label_names)
    head = tmp_path / f"teacher-{order}"
    teacher_with_head(str(tiny_teacher), head, labels if order == "sorted" else labels[::-1])
    out = tmp_path / "out"

    result = build(recipe, out, "--set", f"teacher.model={head}", command="teacher")

    assert result.exit_code == 0, result.output
    (entry,) = [out / "cache" / n for n in cache_entries(out)]
    assert json.loads((entry / "manifest.json").read_text())["metrics"]["fine_tuned"] == 0.0
    assert json.loads((entry / "labels.json").read_text()) == labels  # the order every later stage uses
    # The cached teacher scores each label exactly as the given head does, whatever order it stores them in.
    texts = ["turn off the kitchen lights", "set a timer for ten minutes"]
    given, cached = logits_by_label(head, texts), logits_by_label(entry / "model", texts)
    assert set(given) == set(cached) == set(labels)
    for label in labels:
        np.testing.assert_allclose(cached[label], given[label], atol=1e-5, err_msg=label)
