"""Classify text with this bundle. Needs only onnxruntime, tokenizers and numpy (no torch).

    python predict.py "turn off the kitchen lights" ["another utterance" ...]

Prints one line per text: the label, a tab, and its probability. Tokenizing and running the model is
edgetune_runtime.py's (shipped beside this file), the code edgetune measured the bundle with.
"""

import json
import sys
from pathlib import Path

import numpy as np

try:
    import edgetune_runtime as runtime  # beside predict.py in a bundle
except ImportError:
    from edgetune import runtime  # imported from an edgetune checkout

HERE = Path(__file__).resolve().parent


def load(folder=HERE, threads=None, provider="CPUExecutionProvider"):
    """(tokenizer, session, labels) of the bundle in `folder`; `threads` None: the target's intra-op thread count
    from preprocess.json, as bench timed the bundle (onnxruntime picks when an older bundle has none)."""
    folder = Path(folder)
    settings = json.loads((folder / "preprocess.json").read_text())
    tokenizer = runtime.load_tokenizer(folder, settings)
    session = runtime.open_session(folder / "model.onnx", threads or settings.get("intra_op_threads", 0), provider)
    labels = json.loads((folder / "labels.json").read_text())
    return tokenizer, session, labels


def probabilities(texts, tokenizer, session):
    logits = runtime.logits(list(texts), tokenizer, session)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    return probs / probs.sum(-1, keepdims=True)


def predict(texts, tokenizer, session, labels):
    """(label, probability) of the most likely label, for each text."""
    return [(labels[int(row.argmax())], float(row.max())) for row in probabilities(texts, tokenizer, session)]


def top_k(texts, tokenizer, session, labels, k=3):
    """The k most likely (label, probability) pairs, best first, for each text."""
    probs = probabilities(texts, tokenizer, session)
    return [[(labels[int(i)], float(row[i])) for i in np.argsort(-row, kind="stable")[:k]] for row in probs]


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for label, prob in predict(sys.argv[1:], *load()):
        print(f"{label}\t{prob:.3f}")
