"""`edgetune predict`: the bundle's own torch-free prediction code (predict.py's), texts in, JSON lines out."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

from edgetune import bundle_predict
from edgetune.errors import BadInput

BATCH = 32  # predict.py's batch: int8 dynamic quantization scales by the batch, so answers match it batch for batch


def find_bundle(path: Path) -> Path:
    """The bundle folder: `path` itself, or `path/bundle` for a build folder (DIR/<target>)."""
    for folder in (path, path / "bundle"):
        if (folder / "model.onnx").is_file() and (folder / "preprocess.json").is_file():
            return folder
    raise BadInput(f"{path}: not an edgetune bundle (no model.onnx and preprocess.json in it or in {path / 'bundle'}); "
                   "pass DIR/<target>/bundle of a finished build, e.g. edgetune-out/rpi5/bundle")


def text_batches(texts: tuple[str, ...], stdin) -> iter:
    """The arguments, or else stdin's non-empty lines, BATCH at a time (a pipe is answered as it streams)."""
    lines = iter(texts) if texts else (line.rstrip("\r\n") for line in stdin)
    lines = (line for line in lines if line.strip())
    while batch := list(itertools.islice(lines, BATCH)):
        yield batch


def predict_lines(path: Path, texts: tuple[str, ...], *, top_k: int = 3, threads: int | None = None,
                  stdin=None, stdout=None) -> int:
    """Write one JSON object a text ({"text", "label", "score", "top_k": [{"label", "score"}, ...]}); the count."""
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    folder = find_bundle(Path(path))
    tokenizer, session, labels = bundle_predict.load(folder, threads=threads)
    confidence = bundle_predict.load_confidence(folder)
    count = 0
    for batch in text_batches(texts, stdin):
        for text, ((label, score), ranked) in zip(batch, bundle_predict.top_k(batch, tokenizer, session, labels, top_k,
                                                                              confidence)):
            stdout.write(json.dumps({"text": text, "label": label, "score": round(score, 6),
                                     "top_k": [{"label": name, "score": round(p, 6)} for name, p in ranked]}) + "\n")
        stdout.flush()
        count += len(batch)
    if count == 0:
        raise BadInput("no text to classify: give texts as arguments or one a line on stdin")
    return count
