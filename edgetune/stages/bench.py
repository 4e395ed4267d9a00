"""Bench: assemble the bundle, then measure it on this host: latency, cold start, memory, size, accuracy.

Reads: quantize/ (the model that ships + tokenizer + labels), export/model.onnx (fp32 student, for
       comparison), baseline/ (the fp32 teacher), teacher/manifest.json (teacher accuracy), distill/manifest.json
       (student layers), the recipe's test split.
Writes: bundle/ (model.onnx, tokenizer files, labels.json, preprocess.json, confidence.json (temperature, abstain
        threshold: edgetune.confidence, fitted on the validation split), predict.py and the edgetune_runtime.py it
        runs on, config.json and the model card README.md; the manifest is written by the pipeline), pytorch_student/
        (the merged student), report.json, report.md and the plots.
Never cached: a build reuses the report only while the bundle it describes is unchanged.

Running and timing the models is edgetune.runtime's; report.json's fields are edgetune.report_json.Report.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgetune import budgets, bundle_predict, hf_bundle, runtime
from edgetune.artifacts import folder_size
from edgetune.console import log, progress
from edgetune.data import load_dataset, sequence_length
from edgetune.errors import StageFailed
from edgetune.metrics import classification_scores, per_class_f1
from edgetune.quantizers import INT8_REFERENCE
from edgetune.recipe import Recipe
from edgetune.report import write_reports
from edgetune.report_json import SCHEMA_VERSION, Int4VsInt8, LatencyMs, ModelRow, Ratio, RemoteRun, Report
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
confidence = predict.load_confidence()
predict.predict([sys.argv[2]], tokenizer, session, labels, confidence)
cold = time.perf_counter() - start
texts = json.load(sys.stdin)
for i in range(0, len(texts), 32):
    predict.predict(texts[i:i + 32], tokenizer, session, labels, confidence)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across exec.
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
print(json.dumps({"cold_start_ms": cold * 1e3, "peak_rss_mb": peak}))
"""


@dataclass
class Model:
    """One model bench runs: its tokenizer and session, and what it scored and weighs."""
    tokenizer: object
    session: object
    size_bytes: int
    predictions: np.ndarray | None = None
    logits: np.ndarray | None = None  # on the test split


def assemble_bundle(src: Path, bundle: Path, max_length: int, intra_op_threads: int) -> None:
    bundle.mkdir()
    for name in BUNDLE_FILES:
        if (src / name).exists():
            shutil.copy(src / name, bundle / name)
    # The target's intra-op thread count travels with the bundle: predict.py opens its session with it, as bench
    # times it (onnxruntime's own default is a thread per core; targets/*.yaml say why the x86 presets run one).
    settings = runtime.preprocess_settings(src, max_length) | {"intra_op_threads": intra_op_threads}
    (bundle / "preprocess.json").write_text(json.dumps(settings))
    shutil.copy(Path(bundle_predict.__file__), bundle / "predict.py")
    shutil.copy(Path(runtime.__file__), bundle / "edgetune_runtime.py")  # predict.py's tokenizer and session code


def check_provider(target: Target) -> None:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if target.remote is None and target.execution_provider not in available:
        raise StageFailed(
            f"target {target.name} needs {target.execution_provider}, which this host's onnxruntime lacks "
            f"(it has {', '.join(available)}); bench it on a machine with that provider (e.g. onnxruntime-gpu "
            "and an NVIDIA GPU for CUDAExecutionProvider)"
        )


def folder_length(recipe: Recipe, folder: Path, data) -> int:
    """The truncation length the stages that built `folder` used, for the tokenizer saved in it."""
    from tokenizers import Tokenizer

    return sequence_length(recipe.data, Tokenizer.from_file(str(folder / "tokenizer.json")), data.train.texts).tokens


def open_models(bundle: Path, inputs: dict[str, Path], threads: int, provider: str, teacher_length: int) -> dict:
    """The shipped model, the fp32 student it was quantized from, the fp32 teacher (and int8 beside int4)."""
    tokenizer = runtime.load_tokenizer(bundle)
    teacher_tokenizer = runtime.load_tokenizer(inputs["baseline"],
                                               runtime.preprocess_settings(inputs["baseline"], teacher_length))
    paths = {"shipped": (tokenizer, bundle / "model.onnx"),
             "student_fp32": (tokenizer, inputs["export"] / "model.onnx"),
             "teacher_fp32": (teacher_tokenizer, inputs["baseline"] / "model.onnx")}
    if (inputs["quantize"] / INT8_REFERENCE).exists():  # written beside an int4 model
        paths["int8_dynamic"] = (tokenizer, inputs["quantize"] / INT8_REFERENCE)
    return {name: Model(tok, runtime.open_session(path, threads, provider), path.stat().st_size)
            for name, (tok, path) in paths.items()}


def score(models: dict[str, Model], texts: list[str], truth: np.ndarray, labels: list[str]) -> tuple[dict, dict]:
    """Accuracy / macro-F1 and per-class F1 of every model on the test split."""
    scores, per_class = {}, {}
    for name, m in models.items():
        m.logits = runtime.logits(texts, m.tokenizer, m.session)
        m.predictions = m.logits.argmax(-1)
        scores[name] = classification_scores(truth, m.predictions, len(labels))
        per_class[name] = dict(zip(labels, map(float, per_class_f1(truth, m.predictions, len(labels)))))
    return scores, per_class


def time_models(models: dict[str, Model], texts: list[str], target: Target, recipe: Recipe):
    """All models interleaved in one run over the same replayed test texts: name -> Latency, and the feed lengths."""
    feeds = {name: runtime.latency_feeds(texts, m.tokenizer, m.session, target.batch_size, target.sequence_length,
                                         recipe.seed) for name, m in models.items()}
    runners = {name: runtime.Runner(lambda feed, s=m.session: s.run(None, feed), feeds[name])
               for name, m in models.items()}
    rule = runtime.StopRule.of(recipe.bench)
    with progress() as bar:
        task = bar.add_task("benchmarking shipped / fp32 student / teacher", total=rule.max_runs)
        latency = runtime.measure(runners, rule, on_round=lambda done, _: bar.update(task, completed=done))
    return latency, [len(f["input_ids"][0]) for f in feeds["shipped"]]


def calibrate(recipe: Recipe, data, bundle: Path, shipped: Model) -> dict:
    """Fit the temperature and abstain threshold on validation (edgetune.confidence); confidence.json joins the
    bundle before it is timed, so the cold start and the device run the answer path that ships."""
    from edgetune import confidence
    from edgetune.report_json import Confidence

    settings, section = confidence.fit(recipe, data, lambda t: runtime.logits(t, shipped.tokenizer, shipped.session),
                                       shipped.logits)
    if settings is not None:
        (bundle / "confidence.json").write_text(json.dumps(settings, indent=2))
    log(confidence.summary(Confidence(**section)))
    return section


def cold_start(bundle: Path, texts: list[str]) -> dict:
    result = subprocess.run([sys.executable, "-c", COLD_START, str(bundle), texts[0]], input=json.dumps(texts),
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise StageFailed(f"bundle smoke run failed (python predict.py in {bundle}):\n{result.stderr.strip()[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run(recipe: Recipe, *, inputs: dict[str, Path], out_dir: Path, target: Target) -> dict[str, float]:
    from edgetune import host as hostinfo

    check_provider(target)
    build_host = hostinfo.describe(target)
    if hostinfo.target_mismatch(target, build_host):
        log(hostinfo.target_mismatch(target, build_host), style="yellow")
    bundle = out_dir / "bundle"
    data = load_dataset(recipe.data, recipe.seed)
    max_length = folder_length(recipe, inputs["quantize"], data)
    assemble_bundle(inputs["quantize"], bundle, max_length, target.intra_op_threads)
    hf_bundle.write_config(inputs["export"] / "merged", bundle, max_length)
    # On a remote target the device times the shipped model; this host still compares the models.
    provider = "CPUExecutionProvider" if target.remote else target.execution_provider
    models = open_models(bundle, inputs, build_host["threads"], provider,
                         folder_length(recipe, inputs["baseline"], data))
    texts, truth = list(data.test.texts), np.array(data.test.labels)
    labels = json.loads((bundle / "labels.json").read_text())
    scores, per_class = score(models, texts, truth, labels)
    agreement = float(np.mean(models["student_fp32"].predictions == models["shipped"].predictions))
    log(f"accuracy {scores['shipped']['accuracy']:.4f} (fp32 student {scores['student_fp32']['accuracy']:.4f}, "
        f"{agreement:.1%} identical predictions; fp32 teacher {scores['teacher_fp32']['accuracy']:.4f})")
    confidence = calibrate(recipe, data, bundle, models["shipped"])
    latency, lengths = time_models(models, texts, target, recipe)
    child = cold_start(bundle, texts)
    device = None
    if target.remote is not None:
        from edgetune import remote

        device = remote.remote_bench(bundle, target, recipe.bench, texts, seed=recipe.seed)
        child = {"cold_start_ms": device["cold_start_ms"], "peak_rss_mb": device["peak_rss_mb"]}
        on = device["latency_ms"]
        log(f"on {device['remote']['address']}: p95 {on['p95']:.2f} ms [{on['p95_ci'][0]:.2f}, {on['p95_ci'][1]:.2f}] "
            f"over {on['runs']} runs")
    measured = Measured(models, scores, per_class, latency, lengths, child, device, confidence)
    report = build_report(recipe, target, inputs, bundle, build_host, measured)
    (bundle / "README.md").write_text(hf_bundle.model_card(report, recipe, labels, max_length))
    report.bundle_bytes = folder_size(bundle)
    hf_bundle.keep_pytorch_student(inputs["export"] / "merged", out_dir)
    write_reports(report, out_dir)
    return {"p95_ms": report.latency_ms.p95, "accuracy": report.accuracy, "macro_f1": report.macro_f1,
            "size_bytes": float(report.size_bytes)}


# --- the report -----------------------------------------------------------------------------------------------

@dataclass
class Measured:
    models: dict[str, Model]
    scores: dict[str, dict]
    per_class: dict[str, dict]
    latency: dict  # name -> runtime.Latency, this host
    lengths: list[int]  # token lengths of the replayed feeds
    child: dict  # cold_start_ms, peak_rss_mb
    device: dict | None  # remote.remote_bench's result, for a remote target
    confidence: dict  # the report's confidence section (edgetune.confidence.fit)


def build_report(recipe: Recipe, target: Target, inputs: dict[str, Path], bundle: Path, build_host: dict,
                 m: Measured) -> Report:
    from edgetune import host as hostinfo
    from edgetune.artifacts import read_manifest

    host = m.device["host"] if m.device else build_host
    mismatch = hostinfo.target_mismatch(target, host)
    latency = shipped_latency(m, target)
    scores, sizes = m.scores, {name: model.size_bytes for name, model in m.models.items()}
    teacher_manifest = read_manifest(inputs["teacher"])
    teacher = teacher_manifest["metrics"]
    report = Report(
        schema_version=SCHEMA_VERSION, target=target.name, measured_on_target=mismatch is None,
        note=mismatch or f"Measured on a host matching the {target.name} profile.", host=host,
        quantization=recipe.quantize.method, latency_ms=latency,
        throughput_per_s=1e3 * target.batch_size / latency.mean, cold_start_ms=m.child["cold_start_ms"],
        peak_rss_mb=m.child["peak_rss_mb"], accuracy=scores["shipped"]["accuracy"],
        macro_f1=scores["shipped"]["macro_f1"], per_class_f1=m.per_class["shipped"],
        agreement_with_fp32=float(np.mean(m.models["student_fp32"].predictions == m.models["shipped"].predictions)),
        size_bytes=sizes["shipped"], bundle_bytes=folder_size(bundle),
        student_fp32=scores["student_fp32"] | {"size_bytes": sizes["student_fp32"],
                                               "per_class_f1": m.per_class["student_fp32"]},
        teacher={"accuracy": teacher["test_accuracy"], "macro_f1": teacher["test_macro_f1"],
                 "layers": int(teacher["layers"]), "parameters": int(teacher["parameters"]),
                 "per_class_f1": m.per_class["teacher_fp32"]},
        student={"layers": int(read_manifest(inputs["distill"])["metrics"]["layers"])},
        comparison=comparison_rows(m), speedup_vs_teacher_p95=speedup(m), test_examples=len(m.models["shipped"].predictions),
        budgets={},  # judged below, once the estimate (if any) is known
        test_set_sha256=teacher_manifest["material"]["files"]["test"], int4_vs_int8_p95=int4_vs_int8(m, bundle),
        confidence=m.confidence)
    report = _typed(report)
    if m.device:
        report.remote = RemoteRun(**m.device["remote"])
        report.device_agreement = float(np.mean(np.array(m.device["predictions"]) == m.models["shipped"].predictions))
        report.comparison_note = f"comparison rows measured on the build host ({build_host['cpu']})"
    elif mismatch and target.peak_gflops.fp32 and target.memory_bandwidth_gbs:
        report.estimate = latency_estimate(bundle / "model.onnx", target, report)
    report.budgets = budgets.judge(target.budgets, report)
    return report


def _typed(report: Report) -> Report:
    """Nested sections given as dicts above, checked and typed by the one definition."""
    from edgetune.report_json import parse

    return parse(dataclasses.asdict(report), "bench")


def shipped_latency(m: Measured, target: Target) -> LatencyMs:
    if m.device:
        summary, samples = m.device["latency_ms"], m.device["samples_ms"]
    else:
        summary, samples = m.latency["shipped"].summary(), m.latency["shipped"].samples_ms
        summary["sequence_length"] = {"min": min(m.lengths), "median": float(np.median(m.lengths)),
                                      "max": max(m.lengths)}
        summary["batch_size"] = target.batch_size
    return LatencyMs(**(summary | {"samples": [round(x, 4) for x in samples]}))


def comparison_rows(m: Measured) -> dict[str, ModelRow]:
    rows = {}
    for name in ("teacher_fp32", "student_fp32", "shipped"):
        timing = m.latency[name].summary()
        rows[name] = ModelRow(m.scores[name]["accuracy"], m.scores[name]["macro_f1"], timing["p50"], timing["p95"],
                              timing["p95_ci"], m.models[name].size_bytes)
    return rows


def speedup(m: Measured) -> Ratio:
    ratio, lo, hi = runtime.ratio_interval(m.latency["shipped"].samples_ms, m.latency["teacher_fp32"].samples_ms,
                                           95, 4000)
    shipped, teacher = m.latency["shipped"].summary(), m.latency["teacher_fp32"].summary()
    log(f"p95 {shipped['p95']:.2f} ms [{shipped['p95_ci'][0]:.2f}, {shipped['p95_ci'][1]:.2f}] over {shipped['runs']} "
        f"runs ({shipped['stopped_because']}); teacher fp32 p95 {teacher['p95']:.2f} ms: "
        f"{ratio:.1f}x faster [{lo:.1f}, {hi:.1f}]")
    return Ratio(ratio, [lo, hi])


def int4_vs_int8(m: Measured, bundle: Path) -> Int4VsInt8 | None:
    if "int8_dynamic" not in m.latency:
        return None
    ratio, lo, hi = runtime.ratio_interval(m.latency["int8_dynamic"].samples_ms, m.latency["shipped"].samples_ms,
                                           95, 4000)
    int8 = m.models["int8_dynamic"]
    log(f"int4 p95 / int8 dynamic p95 on this host: {ratio:.2f} [{lo:.2f}, {hi:.2f}] "
        f"({runtime.speed_verdict(lo, hi)}); size {m.models['shipped'].size_bytes / 1e6:.1f} MB vs "
        f"{int8.size_bytes / 1e6:.1f} MB")
    return Int4VsInt8(ratio, [lo, hi], m.latency["int8_dynamic"].summary()["p95"], int8.size_bytes,
                      m.scores["int8_dynamic"]["accuracy"])


def latency_estimate(model: Path, target: Target, report: Report) -> dict | None:
    """Roofline estimate for a target that is not at hand; kept apart from every measured field."""
    from edgetune import roofline
    from edgetune.errors import BadInput

    measured = dataclasses.asdict(report.latency_ms) | {"threads": report.host.threads}
    try:
        estimate = roofline.estimate_latency(model, target, measured)
    except BadInput as err:
        log(f"no latency estimate for {target.name}: {err}")
        return None
    log(f"ESTIMATE, not measured: p95 ≈ {estimate['p95_ms']:.2f} ms on {target.name} (roofline; assumptions in report.json)")
    return estimate
