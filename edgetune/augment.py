"""Augmented transfer text for distillation (Tang et al. 2019, "Distilling Task-Specific Knowledge from BERT
into Simple Neural Networks", section 3.3): perturbed copies of the training texts that the teacher labels
softly. Hard labels would be wrong for many of them; the teacher's logits say how much of each intent is left,
and that is the knowledge a student cannot get from the labels alone.

Per copy of a text: each word is replaced by the mask token with probability `MASK`, else by a word drawn
from the training texts' own words with probability `SWAP` (the paper draws a word of the same part of speech;
a corpus draw needs no tagger); then, with probability `NGRAM`, only a random n-gram (n in 1..5) is kept.
"""

from __future__ import annotations

import random

MASK, SWAP, NGRAM = 0.1, 0.1, 0.25


def augment_texts(texts: list[str], copies: int, mask_token: str, seed: int) -> list[str]:
    """`copies` perturbed versions of every text, deterministic under `seed`; duplicates of a source dropped."""
    rng = random.Random(seed)
    corpus = [word for text in texts for word in text.split()]
    out: list[str] = []
    for text in texts:
        words = text.split()
        seen = {text}
        for _ in range(copies):
            new = [mask_token if (r := rng.random()) < MASK else rng.choice(corpus) if r < MASK + SWAP else w
                   for w in words]
            if len(new) > 1 and rng.random() < NGRAM:
                n = rng.randint(1, min(5, len(new)))
                start = rng.randint(0, len(new) - n)
                new = new[start : start + n]
            candidate = " ".join(new)
            if candidate not in seen:
                seen.add(candidate)
                out.append(candidate)
    return out
