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
from edgetune.data import load_dataset, sequence_length
from edgetune.errors import StageFailed
from edgetune.latency import measure_interleaved
from edgetune.metrics import classification_scores, per_class_f1
from edgetune.recipe import Recipe
from edgetune.report import write_reports
from edgetune.stages.quantize import INT8_REFERENCE
from edgetune.targets import Target

BUNDLE_FILES = ("model.onnx", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                "labels.json")

# Runs in a fresh interpreter so the build's own memory is not counted: load + first inference, peak RSS.
# The test texts come on stdin: a large test split overflows the argument list.
COLD_START = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
import predict
start = time.perf_counter()
tokenizer, session, labels = predict.load()
predict.predict([sys.argv[2]], tokenizer, session, labels)
cold = time.perf_counter() - start
texts = json.load(sys.stdin)
for i in range(0, len(texts), 32):
    predict.predict(texts[i:i + 32], tokenizer, session, labels)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across exec.
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
print(json.dumps({"cold_start_ms": cold * 1e3, "peak_rss_mb": peak}))
"""


def preprocess_settings(folder: Path, max_length: int) -> dict:
    """Truncation and padding for a Hugging Face tokenizer folder, as predict.py applies them."""
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    vocab = json.loads((folder / "tokenizer.json").read_text())["model"]["vocab"]
    pad_token = tokenizer_config.get("pad_token", "[PAD]")
    pad_id = vocab[pad_token] if isinstance(vocab, dict) else next(i for i, (t, _) in enumerate(vocab) if t == pad_token)
    return {"max_length": max_length, "pad_id": pad_id, "pad_token": pad_token}


def folder_length(recipe: Recipe, folder: Path, data) -> int:
    """The truncation length the stages that built `folder` used, for the tokenizer saved in it."""
    from tokenizers import Tokenizer

    return sequence_length(recipe.data, Tokenizer.from_file(str(folder / "tokenizer.json")), data.train.texts).tokens


def assemble_bundle(src: Path, bundle: Path, max_length: int, threads: int) -> None:
    bundle.mkdir()
    for name in BUNDLE_FILES:
        if (src / name).exists():
            shutil.copy(src / name, bundle / name)
    # The target's intra-op thread count travels with the bundle: predict.py opens its session with it, as bench times it.
    (bundle / "preprocess.json").write_text(json.dumps(preprocess_settings(src, max_length) | {"intra_op_threads": threads}))
    shutil.copy(Path(bundle_predict.__file__), bundle / "predict.py")


def session_options(threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # No spin-waiting between runs: interleaved sessions would steal each other's cores (p95 x40 seen here),
    # and a device serving sporadic requests sleeps between them anyway.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
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


def megabytes(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:.1f} MB"


def cold_start(bundle: Path, texts: list[str]) -> dict:
    result = subprocess.run([sys.executable, "-c", COLD_START, str(bundle), texts[0]], input=json.dumps(texts),
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise StageFailed(f"bundle smoke run failed (python predict.py in {bundle}):\n{result.stderr.strip()[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run(recipe: Recipe, *, inputs: dict[str, Path], out_dir: Path, target: Target) -> dict[str, float]:
    import onnxruntime as ort

    from edgetune.latency import ratio_interval, speed_verdict

    available = ort.get_available_providers()
    if target.remote is None and target.execution_provider not in available:
        raise StageFailed(
            f"target {target.name} needs {target.execution_provider}, which this host's onnxruntime lacks "
            f"(it has {', '.join(available)}); bench it on a machine with that provider (e.g. onnxruntime-gpu "
            "and an NVIDIA GPU for CUDAExecutionProvider)"
        )
    host = build_host = hostinfo.describe(target)
    mismatch = hostinfo.target_mismatch(target, host)
    if mismatch:
        log(mismatch, style="yellow")
    bundle = out_dir / "bundle"
    data = load_dataset(recipe.data, recipe.seed)
    assemble_bundle(inputs["quantize"], bundle, folder_length(recipe, inputs["quantize"], data), target.intra_op_threads)
    # On a remote target the device times the shipped model; this host still compares the three models.
    options = session_options(build_host["threads"])
    providers = ["CPUExecutionProvider"] if target.remote else [target.execution_provider]
    tokenizer, session, labels = bundle_predict.load(bundle, options, providers)
    teacher_tokenizer = bundle_predict.load_tokenizer(
        inputs["baseline"], preprocess_settings(inputs["baseline"], folder_length(recipe, inputs["baseline"], data)))
    # The shipped model, the fp32 student it was quantized from, and the fp32 teacher: same inputs, same host.
    models = {
        "shipped": (tokenizer, session),
        "student_fp32": (tokenizer, ort.InferenceSession(str(inputs["export"] / "model.onnx"), options, providers=providers)),
        "teacher_fp32": (teacher_tokenizer,
                         ort.InferenceSession(str(inputs["baseline"] / "model.onnx"), options, providers=providers)),
    }
    int8_reference = inputs["quantize"] / INT8_REFERENCE  # written beside an int4 model
    if int8_reference.exists():
        models["int8_dynamic"] = (tokenizer, ort.InferenceSession(str(int8_reference), options, providers=providers))
    texts, truth, n = list(data.test.texts), np.array(data.test.labels), len(labels)
    predictions = {name: predict_all(texts, tok, sess) for name, (tok, sess) in models.items()}
    scores = {name: classification_scores(truth, p, n) for name, p in predictions.items()}
    per_class = {name: dict(zip(labels, map(float, per_class_f1(truth, p, n)))) for name, p in predictions.items()}
    agreement = float(np.mean(predictions["student_fp32"] == predictions["shipped"]))
    log(f"accuracy {scores['shipped']['accuracy']:.4f} (fp32 student {scores['student_fp32']['accuracy']:.4f}, "
        f"{agreement:.1%} identical predictions; fp32 teacher {scores['teacher_fp32']['accuracy']:.4f})")

    feeds = {name: latency_feeds(texts, tok, sess, target.batch_size, target.sequence_length, recipe.seed)
             for name, (tok, sess) in models.items()}
    runners = {name: (lambda feed, sess=sess: sess.run(None, feed), feeds[name]) for name, (_, sess) in models.items()}
    latency = measure_interleaved(runners, recipe.bench, desc="benchmarking shipped / fp32 student / teacher")
    timing = {name: lat.summary() for name, lat in latency.items()}
    speedup, speedup_lo, speedup_hi = ratio_interval(latency["shipped"].samples_ms, latency["teacher_fp32"].samples_ms, 95, 4000)
    shipped = timing["shipped"]
    log(f"p95 {shipped['p95']:.2f} ms [{shipped['p95_ci'][0]:.2f}, {shipped['p95_ci'][1]:.2f}] over {shipped['runs']} runs "
        f"({shipped['stopped_because']}); teacher fp32 p95 {timing['teacher_fp32']['p95']:.2f} ms: "
        f"{speedup:.1f}x faster [{speedup_lo:.1f}, {speedup_hi:.1f}]")
    int4_vs_int8 = None
    if "int8_dynamic" in latency:
        ratio, lo, hi = ratio_interval(latency["int8_dynamic"].samples_ms, latency["shipped"].samples_ms, 95, 4000)
        int4_vs_int8 = {"ratio": ratio, "ci": [lo, hi], "int8_p95": timing["int8_dynamic"]["p95"],
                        "int8_size_bytes": int8_reference.stat().st_size, "int8_accuracy": scores["int8_dynamic"]["accuracy"]}
        log(f"int4 p95 / int8 dynamic p95 on this host: {ratio:.2f} [{lo:.2f}, {hi:.2f}] "
            f"({speed_verdict(lo, hi)}); size "
            f"{megabytes(bundle / 'model.onnx')} vs {megabytes(int8_reference)}")
    child = cold_start(bundle, texts)
    on_device = None
    if target.remote is not None:
        from edgetune import remote

        on_device = remote.remote_bench(bundle, target, recipe.bench, texts, seed=recipe.seed)
        host, shipped = on_device["host"], on_device["latency_ms"]
        mismatch = hostinfo.target_mismatch(target, host)
        child = {"cold_start_ms": on_device["cold_start_ms"], "peak_rss_mb": on_device["peak_rss_mb"]}
        log(f"on {on_device['remote']['address']}: p95 {shipped['p95']:.2f} ms "
            f"[{shipped['p95_ci'][0]:.2f}, {shipped['p95_ci'][1]:.2f}] over {shipped['runs']} runs")
    teacher_manifest = read_manifest(inputs["teacher"])
    teacher = teacher_manifest["metrics"]
    sizes = {"shipped": (bundle / "model.onnx").stat().st_size,
             "student_fp32": (inputs["export"] / "model.onnx").stat().st_size,
             "teacher_fp32": (inputs["baseline"] / "model.onnx").stat().st_size}
    lengths = [len(f["input_ids"][0]) for f in feeds["shipped"]]
    samples = on_device["samples_ms"] if on_device else latency["shipped"].samples_ms
    comparison = {name: scores[name] | {"p50": timing[name]["p50"], "p95": timing[name]["p95"],
                                        "p95_ci": timing[name]["p95_ci"], "size_bytes": sizes[name]}
                  for name in ("teacher_fp32", "student_fp32", "shipped")}
    report = {
        "schema_version": 1,
        "target": target.name,
        "measured_on_target": mismatch is None,
        "note": mismatch or f"Measured on a host matching the {target.name} profile.",
        "host": host,
        "quantization": recipe.quantize.method,
        "latency_ms": shipped | {"batch_size": target.batch_size,
                                 "sequence_length": {"min": min(lengths), "median": float(np.median(lengths)), "max": max(lengths)},
                                 "samples": [round(x, 4) for x in samples]},
        "throughput_per_s": 1e3 * target.batch_size / shipped["mean"],
        "cold_start_ms": child["cold_start_ms"],
        "peak_rss_mb": child["peak_rss_mb"],
        "accuracy": scores["shipped"]["accuracy"],
        "macro_f1": scores["shipped"]["macro_f1"],
        "per_class_f1": per_class["shipped"],
        "agreement_with_fp32": agreement,
        "size_bytes": sizes["shipped"],
        "bundle_bytes": folder_size(bundle),
        "student_fp32": scores["student_fp32"] | {"size_bytes": sizes["student_fp32"], "per_class_f1": per_class["student_fp32"]},
        "teacher": {"accuracy": teacher["test_accuracy"], "macro_f1": teacher["test_macro_f1"],
                    "layers": int(teacher["layers"]), "parameters": int(teacher["parameters"]),
                    "per_class_f1": per_class["teacher_fp32"]},
        "student": {"layers": int(read_manifest(inputs["distill"])["metrics"]["layers"])},
        "comparison": comparison,
        # teacher fp32 p95 / shipped p95, with a 95% bootstrap interval: 4.0 means a quarter of the latency.
        "speedup_vs_teacher_p95": {"ratio": speedup, "ci": [speedup_lo, speedup_hi]},
        # int4 builds only: shipped p95 / int8 dynamic p95 of the same model, timed in the same run.
        "int4_vs_int8_p95": int4_vs_int8,
        "test_examples": len(texts),
        "test_set_sha256": teacher_manifest["material"]["files"]["test"],
        "budgets": budgets(target, shipped["p95"], sizes["shipped"], scores["shipped"]["accuracy"]),
    }
    if on_device:
        report["remote"] = on_device["remote"]
        report["device_agreement"] = float(np.mean(np.array(on_device["predictions"]) == predictions["shipped"]))
        report["comparison_note"] = f"comparison rows measured on the build host ({build_host['cpu']})"
    elif mismatch and target.peak_gflops.fp32 and target.memory_bandwidth_gbs:
        report["estimate"] = latency_estimate(bundle / "model.onnx", target, report)
    write_reports(report, out_dir, samples)
    return {"p95_ms": shipped["p95"], "accuracy": scores["shipped"]["accuracy"], "macro_f1": scores["shipped"]["macro_f1"],
            "size_bytes": float(sizes["shipped"])}


def latency_estimate(model: Path, target: Target, report: dict) -> dict | None:
    """Roofline estimate for a target that is not at hand; kept apart from every measured field."""
    from edgetune import roofline
    from edgetune.errors import BadInput

    try:
        estimate = roofline.estimate_latency(model, target, report["latency_ms"] | {"threads": report["host"]["threads"]})
    except BadInput as err:
        log(f"no latency estimate for {target.name}: {err}")
        return None
    log(f"ESTIMATE, not measured: p95 ≈ {estimate['p95_ms']:.2f} ms on {target.name} (roofline; assumptions in report.json)")
    return estimate


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
