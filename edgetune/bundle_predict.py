"""Classify text with this bundle. Needs only onnxruntime, tokenizers and numpy (no torch).

    python predict.py "turn off the kitchen lights" ["another utterance" ...]

Prints one line per text: the label, a tab, and its probability.
"""

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

HERE = Path(__file__).resolve().parent


def load_tokenizer(folder=HERE, settings=None):
    """tokenizer.json with the bundle's truncation and padding (preprocess.json)."""
    folder = Path(folder)
    settings = settings or json.loads((folder / "preprocess.json").read_text())
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_truncation(settings["max_length"])
    tokenizer.enable_padding(pad_id=settings["pad_id"], pad_token=settings["pad_token"])
    return tokenizer


def load(folder=HERE, options=None, providers=("CPUExecutionProvider",)):
    folder = Path(folder)
    tokenizer = load_tokenizer(folder)
    settings = json.loads((folder / "preprocess.json").read_text())
    if options is None and settings.get("intra_op_threads"):
        # The target's thread count (targets/*.yaml says why it is what it is): onnxruntime's default is every core.
        options = ort.SessionOptions()
        options.intra_op_num_threads = settings["intra_op_threads"]
    session = ort.InferenceSession(str(folder / "model.onnx"), sess_options=options, providers=list(providers))
    labels = json.loads((folder / "labels.json").read_text())
    return tokenizer, session, labels


def encode(texts, tokenizer, session):
    """The feed for `session`: int64 arrays padded to the batch's longest text."""
    encodings = tokenizer.encode_batch(list(texts))
    arrays = {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
    }
    return {i.name: arrays[i.name] for i in session.get_inputs()}


def predict(texts, tokenizer, session, labels):
    logits = session.run(None, encode(texts, tokenizer, session))[0]
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    return [(labels[int(row.argmax())], float(row.max())) for row in probs]


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for label, prob in predict(sys.argv[1:], *load()):
        print(f"{label}\t{prob:.3f}")
