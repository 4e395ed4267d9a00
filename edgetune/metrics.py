"""Classification metrics on numpy arrays (no torch, so the bench and the bundle can use them)."""

from __future__ import annotations

import numpy as np


def per_class_f1(y_true, y_pred, num_classes: int) -> np.ndarray:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    f1 = np.zeros(num_classes)
    for c in range(num_classes):
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        f1[c] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return f1


def classification_scores(y_true, y_pred, num_classes: int) -> dict[str, float]:
    """Accuracy and macro-F1 over the classes present in y_true."""
    y_true = np.asarray(y_true)
    present = np.unique(y_true)
    f1 = per_class_f1(y_true, y_pred, num_classes)
    return {
        "accuracy": float(np.mean(np.asarray(y_pred) == y_true)),
        "macro_f1": float(np.mean(f1[present])),
    }


def paired_difference(a, b, resamples: int = 10000, seed: int = 0) -> dict:
    """Mean of a - b over the same texts (per-text scores: correctness, or its mean over seeds), with a 95%
    bootstrap interval that resamples texts, so text difficulty is shared and only the difference varies."""
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (resamples, len(diff)))].mean(1)
    return {"gain": float(diff.mean()), "ci": [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))],
            "only_a_right": int((diff > 0).sum()), "only_b_right": int((diff < 0).sum())}
