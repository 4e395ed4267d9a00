"""Classify text with this bundle. Needs only onnxruntime, tokenizers and numpy (no torch).

    python predict.py "turn off the kitchen lights" ["another utterance" ...]

Prints one line per text: the label, a tab, and its probability, calibrated when the bundle has a confidence.json
(a temperature fitted on validation); with an abstain threshold there, a text the model is not sure enough about is
answered with the abstain label (e.g. out_of_scope) instead of a known one. Tokenizing, running the model and the
answer are edgetune_runtime.py's (shipped beside this file), the code edgetune measured the bundle with.
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


def load_confidence(folder=HERE):
    """The bundle's temperature and abstain threshold (confidence.json), or None when it has none."""
    path = Path(folder) / "confidence.json"
    return json.loads(path.read_text()) if path.is_file() else None


def predict(texts, tokenizer, session, labels, confidence=None):
    """(label, probability) per text; `confidence` from load_confidence (None: the raw softmax, never abstains)."""
    return runtime.answers(runtime.logits(list(texts), tokenizer, session), labels, confidence)


def top_k(texts, tokenizer, session, labels, k=3, confidence=None):
    """(answer, [the k most likely (label, probability) pairs, best first]) for each text; the answer is predict's
    (the abstain label where the bundle abstains), the probabilities calibrated as predict's are."""
    logits = runtime.logits(list(texts), tokenizer, session)
    probs = runtime.probabilities(logits, (confidence or {}).get("temperature", 1.0))
    ranked = [[(labels[int(i)], float(row[i])) for i in np.argsort(-row, kind="stable")[:k]] for row in probs]
    return list(zip(runtime.answers(logits, labels, confidence), ranked))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for label, prob in predict(sys.argv[1:], *load(), confidence=load_confidence()):
        print(f"{label}\t{prob:.3f}")
