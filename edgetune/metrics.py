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
