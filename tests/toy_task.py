"""A separable toy task for tests that must see learning: each class has its own keywords, the rest is filler.

A model that learns anything scores far above chance (1 / number of classes); one that does not stays near it.
The words come from the smart-home texts, so the tiny teacher's WordPiece vocabulary knows them.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

KEYWORDS = {"lights": ("lights", "lamp"), "music": ("music", "song"), "door": ("door", "lock"),
            "timer": ("timer", "countdown")}
FILLER = ("the", "please", "now", "in", "kitchen", "bedroom", "can", "you", "my", "it", "on", "off", "turn", "set")
LABELS = tuple(KEYWORDS)
CHANCE = 1 / len(LABELS)


def toy_texts(n: int, seed: int) -> tuple[list[str], list[int]]:
    """n texts, classes in turn: two of the class's keywords among 0-2 filler words, in random order."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        label = i % len(LABELS)
        words = [rng.choice(KEYWORDS[LABELS[label]]) for _ in range(2)]
        words += [rng.choice(FILLER) for _ in range(rng.randint(0, 2))]
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


def write_toy_data(folder: Path) -> dict[str, Path]:
    """train.csv (160), validation.csv (40), test.csv (80) under `folder`: {split: path}."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, n, seed in (("train", 160, 0), ("validation", 40, 1), ("test", 80, 2)):
        texts, labels = toy_texts(n, seed)
        paths[split] = folder / f"{split}.csv"
        with open(paths[split], "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows((t, LABELS[y]) for t, y in zip(texts, labels))
    return paths
