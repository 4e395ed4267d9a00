"""Bench: assemble the bundle, then measure it on this host: latency, cold start, memory, size, accuracy.

Reads: quantize/ (the model that ships + tokenizer + labels), export/model.onnx (fp32 student, for
       comparison), teacher/manifest.json (teacher accuracy), the recipe's test split.
Writes: bundle/ (model.onnx, tokenizer files, labels.json, preprocess.json, predict.py; the manifest is
        written by the pipeline), report.json, report.md, latency.png.
Never cached: a build reuses the report only while the bundle it describes is unchanged.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from edgetune import bundle_predict, host as hostinfo
from edgetune.artifacts import folder_size, read_manifest
from edgetune.console import log
from edgetune.data import load_dataset
from edgetune.errors import StageFailed
from edgetune.latency import measure
from edgetune.metrics import classification_scores, per_class_f1
from edgetune.recipe import Recipe
from edgetune.report import write_reports
from edgetune.targets import Target

BUNDLE_FILES = ("model.onnx", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                "labels.json")

# Runs in a fresh interpreter so the build's own memory is not counted: load + first inference, peak RSS.
COLD_START = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
import predict
start = time.perf_counter()
tokenizer, session, labels = predict.load()
predict.predict([sys.argv[2]], tokenizer, session, labels)
cold = time.perf_counter() - start
texts = json.loads(sys.argv[3])
for i in range(0, len(texts), 32):
    predict.predict(texts[i:i + 32], tokenizer, session, labels)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across exec.
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
print(json.dumps({"cold_start_ms": cold * 1e3, "peak_rss_mb": peak}))
"""


def assemble_bundle(src: Path, bundle: Path, max_length: int) -> None:
    bundle.mkdir()
    for name in BUNDLE_FILES:
        if (src / name).exists():
            shutil.copy(src / name, bundle / name)
    tokenizer_config = json.loads((src / "tokenizer_config.json").read_text())
    vocab = json.loads((src / "tokenizer.json").read_text())["model"]["vocab"]
    pad_token = tokenizer_config.get("pad_token", "[PAD]")
    pad_id = vocab[pad_token] if isinstance(vocab, dict) else 0
    (bundle / "preprocess.json").write_text(json.dumps({"max_length": max_length, "pad_id": pad_id, "pad_token": pad_token}))
    shutil.copy(Path(bundle_predict.__file__), bundle / "predict.py")


def session_options(threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return options


def predict_all(texts, tokenizer, session, batch_size: int = 32) -> np.ndarray:
    out = []
    for i in range(0, len(texts), batch_size):
        out.append(session.run(None, bundle_predict.encode(texts[i : i + batch_size], tokenizer, session))[0])
    return np.concatenate(out).argmax(-1)


def latency_feeds(texts, tokenizer, session, batch_size: int, length: int | None, seed: int) -> list[dict]:
    """Batches of real test texts in a fixed shuffled order; padded to `length` when the target fixes it."""
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    feeds = []
    for i in range(0, len(order) - batch_size + 1, batch_size):
        feed = bundle_predict.encode([texts[j] for j in order[i : i + batch_size]], tokenizer, session)
        if length:
            feed = {k: np.pad(v[:, :length], ((0, 0), (0, max(0, length - v.shape[1])))) for k, v in feed.items()}
        feeds.append(feed)
    return feeds


def cold_start(bundle: Path, texts: list[str]) -> dict:
    result = subprocess.run([sys.executable, "-c", COLD_START, str(bundle), texts[0], json.dumps(texts)],
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise StageFailed(f"bundle smoke run failed (python predict.py in {bundle}):\n{result.stderr.strip()[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run(recipe: Recipe, *, inputs: dict[str, Path], out_dir: Path, target: Target) -> dict[str, float]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if target.execution_provider not in available:
        raise StageFailed(
            f"target {target.name} needs {target.execution_provider}, which this host's onnxruntime lacks "
            f"(it has {', '.join(available)}); bench it on a machine with that provider (e.g. onnxruntime-gpu "
            "and an NVIDIA GPU for CUDAExecutionProvider)"
        )
    host = hostinfo.describe(target)
    mismatch = hostinfo.target_mismatch(target, host)
    if mismatch:
        log(f"[yellow]{mismatch}[/yellow]")
    bundle = out_dir / "bundle"
    assemble_bundle(inputs["quantize"], bundle, recipe.data.max_length)
    options = session_options(host["threads"])
    providers = (target.execution_provider,)
    tokenizer, session, labels = bundle_predict.load(bundle, options, providers)
    data = load_dataset(recipe.data, recipe.seed)
    texts, truth, n = list(data.test.texts), np.array(data.test.labels), len(labels)

    predictions = predict_all(texts, tokenizer, session)
    scores = classification_scores(truth, predictions, n)
    fp32_session = ort.InferenceSession(str(inputs["export"] / "model.onnx"), options, providers=list(providers))
    fp32_predictions = predict_all(texts, tokenizer, fp32_session)
    fp32_scores = classification_scores(truth, fp32_predictions, n)
    agreement = float(np.mean(fp32_predictions == predictions))
    log(f"accuracy {scores['accuracy']:.4f} (fp32 student {fp32_scores['accuracy']:.4f}, "
        f"{agreement:.1%} identical predictions), macro-F1 {scores['macro_f1']:.4f}")

    feeds = latency_feeds(texts, tokenizer, session, target.batch_size, target.sequence_length, recipe.seed)
    latency = measure(lambda feed: session.run(None, feed), feeds, recipe.bench)
    timing = latency.summary()
    log(f"p95 {timing['p95']:.2f} ms [{timing['p95_ci'][0]:.2f}, {timing['p95_ci'][1]:.2f}] over {timing['runs']} runs "
        f"({timing['stopped_because']})")
    child = cold_start(bundle, texts)
    teacher = read_manifest(inputs["teacher"])["metrics"]
    student = read_manifest(inputs["export"])["metrics"]
    size = (bundle / "model.onnx").stat().st_size
    lengths = [len(f["input_ids"][0]) for f in feeds]
    report = {
        "schema_version": 1,
        "target": target.name,
        "measured_on_target": mismatch is None,
        "note": mismatch or f"Measured on a host matching the {target.name} profile.",
        "host": host,
        "quantization": recipe.quantize.method,
        "latency_ms": timing | {"batch_size": target.batch_size,
                                "sequence_length": {"min": min(lengths), "median": float(np.median(lengths)), "max": max(lengths)}},
        "throughput_per_s": 1e3 * target.batch_size / timing["mean"],
        "cold_start_ms": child["cold_start_ms"],
        "peak_rss_mb": child["peak_rss_mb"],
        "accuracy": scores["accuracy"],
        "macro_f1": scores["macro_f1"],
        "per_class_f1": dict(zip(labels, map(float, per_class_f1(truth, predictions, n)))),
        "agreement_with_fp32": agreement,
        "size_bytes": size,
        "bundle_bytes": folder_size(bundle),
        "student_fp32": fp32_scores | {"size_bytes": int(student["size_bytes"]),
                                       "per_class_f1": dict(zip(labels, map(float, per_class_f1(truth, fp32_predictions, n))))},
        "teacher": {"accuracy": teacher["test_accuracy"], "macro_f1": teacher["test_macro_f1"],
                    "layers": int(teacher["layers"]), "parameters": int(teacher["parameters"])},
        "student": {"layers": len(recipe.distill.layers)},
        "test_examples": len(texts),
        "budgets": budgets(target, timing["p95"], size, scores["accuracy"]),
    }
    write_reports(report, out_dir, latency.samples_ms)
    return {"p95_ms": timing["p95"], "accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"], "size_bytes": float(size)}


def budgets(target: Target, p95: float, size: int, accuracy: float) -> dict:
    b = target.budgets
    checks = {}
    if b.p95_ms is not None:
        checks["p95_ms"] = {"limit": b.p95_ms, "value": round(p95, 3), "ok": p95 <= b.p95_ms}
    if b.size_mb is not None:
        checks["size_mb"] = {"limit": b.size_mb, "value": round(size / 1e6, 2), "ok": size / 1e6 <= b.size_mb}
    if b.min_accuracy is not None:
        checks["min_accuracy"] = {"limit": b.min_accuracy, "value": round(accuracy, 4), "ok": accuracy >= b.min_accuracy}
    return checks
