"""edgetune against the tools a team would pick instead (optimum-cli, Olive), on the same models, in one timing run.

    .venv/bin/python benchmarks/peers/run.py --build LABEL OUT TARGET DATA [--build ...] [--threads N] [--seconds S]

OUT TARGET: a finished edgetune build (`edgetune build --target TARGET --out OUT`); DATA its data folder (train.csv,
test.csv; without test.csv, validation.csv is the test split, as for SNIPS). LABEL names the dataset in the results.
For each build, from the fine-tuned teacher (OUT/cache/teacher-*/model) and from edgetune's student before
quantization (OUT/cache/export-*/merged: distilled, LoRA merged), in the peers' own venv (made here when missing):

  optimum fp32             optimum-cli export onnx --task text-classification
  optimum O2               optimum-cli onnxruntime optimize -O2 (fp32, fused)
  optimum int8 <isa>       optimum-cli onnxruntime quantize --avx2 / --avx512_vnni / --arm64, as this CPU allows
  optimum O2+int8 <isa>    the same quantize on the O2 model
  olive dynamic int8       olive run: conversion -> OrtTransformersOptimization -> OnnxDynamicQuantization
  olive static int8        olive run: conversion -> OrtTransformersOptimization -> OnnxStaticQuantization (QDQ),
                           calibrated on --calibration local training texts

A variant that fails is recorded with its error line (and the workaround where one is known); Olive exits 0 when its
workflow wrote no model, which counts as a failure here. Then every model that was built, and edgetune's shipped
bundle model, is timed in one process: round-robin in blocks (edgetune.runtime.measure, the bench's own timing
loop) over the whole test split at batch 1 with real token lengths (truncated where the build truncated: the
bundle's length for the student's variants, the teacher's for the teacher's), the same intra-op thread count,
spin-waiting off in every session. Accuracy and macro-F1 on the whole test split, size on disk, and the graph each
one ran: op counts of the optimized graph onnxruntime executes (fused and quantized ops). Then the same-graph study: edgetune's shipped model and the fastest peer variant of the student under
session options (1 vs 2 intra-op threads, graph optimization level, a pre-optimized ORT-format model) and against its own
graph with SkipLayerNormalization fused as onnxruntime would have fused it, interleaved.

Results merge by LABEL into benchmarks/results/peers.json and peers.md, with peers-LABEL.png (accuracy against p95,
marker area = size). Paths in them are relative to the repository; the host and its load are described.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from benchmarks.result_paths import shown
HERE = Path(__file__).resolve().parent
RESULTS = REPO / "benchmarks" / "results"
VENV = HERE / ".venv"


# Sessions, feeds, timing and the bootstrap are edgetune's runtime, the code the bench stage and the bundle run on:
# the peers are timed by the same loop and the same statistics as edgetune's own report.
from edgetune import runtime
from edgetune.console import progress
from edgetune.metrics import classification_scores, paired_difference
from edgetune.quantizers.graph import residual_adds_as_sum
from edgetune.runtime import StopRule, cpu_model_and_flags, ratio_interval, speed_verdict

FUSED_OPS = ("Attention", "MultiHeadAttention", "EmbedLayerNormalization", "SkipLayerNormalization",
             "SkipSimplifiedLayerNormalization", "LayerNormalization", "BiasGelu", "FastGelu", "Gelu", "QAttention",
             "QEmbedLayerNormalization", "FusedMatMul", "FusedGemm")
QUANTIZED_OPS = ("MatMulInteger", "DynamicQuantizeLinear", "DynamicQuantizeMatMul", "MatMulIntegerToFloat",
                 "QLinearMatMul", "QuantizeLinear", "DequantizeLinear", "QAttention", "QGemm", "QLinearAdd",
                 "QEmbedLayerNormalization", "MatMulNBits")
# Short turns (10 runs, after 2 untimed ones that refill the caches the previous model evicted): a burst of load from
# other jobs lands on many models alike instead of on one model's 50-run turn (seen: one model's p95 40x another's
# on the same graph with turns of 50 on a host at load 14).
INTERLEAVING = {"block": 10, "rewarm": 2}
# Known peer failures and what gets past them (shown beside the error the run actually met, never instead of it).
WORKAROUNDS = {
    "Unable to find data type for weight_name": (
        "onnxruntime.quantization.quantize_dynamic on the fused graph with extra_options="
        "{'DefaultTensorType': onnx.TensorProto.FLOAT} (optimum-cli has no flag for it; edgetune's quantize stage "
        "passes it)"),
    "No module named 'requests'": "pip install requests in the peers' venv (requirements.txt does)",
}


# ---------------------------------------------------------------- the build under test

@dataclasses.dataclass
class Build:
    label: str
    out: Path
    target: str
    data: Path
    teacher: Path  # HF folder of the fine-tuned teacher
    student: Path  # HF folder of the student before quantization (LoRA merged)
    shipped: Path  # the bundle folder (model.onnx, tokenizer.json, preprocess.json, labels.json)
    max_length: int
    test_file: Path
    student_layers: int
    teacher_layers: int
    teacher_max_length: int  # the teacher's own truncation: with max_length "auto" each tokenizer has its own


def teacher_length(teacher: Path) -> int:
    """The truncation the teacher was trained and evaluated at (its manifest's resolved length, else the recipe's)."""
    manifest = json.loads((teacher / "manifest.json").read_text())
    return int(manifest["metrics"].get("max_length", manifest["material"]["config"]["data"]["max_length"]))


def cache_folder(out: Path, stage: str, key: str) -> Path:
    folder = out / "cache" / f"{stage}-{key[:16]}"
    if not (folder / "manifest.json").is_file():
        sys.exit(f"{folder}: missing or unfinished (no manifest.json); finish the build first")
    return folder


def read_build(label: str, out: str, target: str, data: str) -> Build:
    """The bundle's manifest names the stage keys it was built from: the teacher and export folders are those."""
    out, data = Path(out), Path(data)
    bundle = out / target / "bundle"
    if not (bundle / "manifest.json").is_file():
        sys.exit(f"{bundle}: no finished bundle (manifest.json missing); run edgetune build --target {target} --out {out}")
    material = json.loads((bundle / "manifest.json").read_text())["material"]
    upstream = material["upstream"]
    teacher, export = cache_folder(out, "teacher", upstream["teacher"]), cache_folder(out, "export", upstream["export"])
    export_manifest = json.loads((export / "manifest.json").read_text())
    distill = cache_folder(out, "distill", export_manifest["material"]["upstream"]["distill"])
    test_file = data / "test.csv" if (data / "test.csv").is_file() else data / "validation.csv"
    if not test_file.is_file():
        sys.exit(f"{data}: neither test.csv nor validation.csv")
    # The build's test split, byte for byte: a different file would compare other texts than the bundle's report.
    recorded = json.loads((teacher / "manifest.json").read_text())["material"]["files"]["test"]
    if recorded != runtime.file_sha256(test_file):
        sys.exit(f"{test_file} is not the test split {out} was built with (sha256 differs); pass that build's data folder")
    # The truncation the shipped model runs with (the recipe may say "auto": the bundle holds the resolved length).
    max_length = int(json.loads((bundle / "preprocess.json").read_text())["max_length"])
    return Build(label, out, target, data, teacher / "model", export / "merged", bundle, max_length, test_file,
                 int(json.loads((distill / "manifest.json").read_text())["metrics"]["layers"]),
                 int(json.loads((teacher / "manifest.json").read_text())["metrics"]["layers"]), teacher_length(teacher))


def unfinished_build(label: str, out: str, target: str, data: str) -> Build:
    """A build still training: its finished teacher (and student, once exported), for --prepare to start on."""
    out, data = Path(out), Path(data)

    def only(stage: str) -> Path | None:
        # Several (another recipe's build in the same --out): the newest is the likeliest. A wrong guess costs only
        # build time: variants are filed under their stage folder, and the timing run takes the bundle's own.
        done = [f for f in (out / "cache").glob(f"{stage}-*") if (f / "manifest.json").is_file()]
        newest = max(done, key=lambda f: (f / "manifest.json").stat().st_mtime) if done else None
        if len(done) > 1:
            print(f"· {len(done)} finished {stage} folders in {out}/cache: preparing the newest, {newest.name}")
        return newest

    teacher, export = only("teacher"), only("export")
    if teacher is None:
        sys.exit(f"{out}: no finished teacher yet; nothing to prepare")
    manifest = json.loads((teacher / "manifest.json").read_text())
    length = teacher_length(teacher)  # only Olive's calibration padding uses it here
    return Build(label, out, target, data, teacher / "model", export / "merged" if export else None, None,
                 length, data, 0, int(manifest["metrics"]["layers"]), length)


def read_split(path: Path) -> tuple[list[str], list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [r["text"].strip() for r in rows], [r["label"].strip() for r in rows]


# ---------------------------------------------------------------- the peers' environment and variants

def ensure_venv() -> Path:
    """benchmarks/peers/.venv from requirements.txt, torch pinned first (unpinned, pip resolves a CUDA build)."""
    python = VENV / "bin" / "python"
    if (VENV / "bin" / "olive").exists() and (VENV / "bin" / "optimum-cli").exists():
        return python
    print(f"· creating the peers' venv ({VENV.relative_to(REPO)}): a few minutes", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["torch==2.13.0"], check=True)
    subprocess.run(pip + ["-r", str(HERE / "requirements.txt")], check=True)
    return python


@dataclasses.dataclass
class Variant:
    name: str  # e.g. "optimum int8 avx512_vnni"
    tool: str  # optimum-cli | olive | edgetune
    base: str  # teacher | student
    path: Path | None = None  # the .onnx file
    tokenizer: Path | None = None  # folder with tokenizer.json + tokenizer_config.json
    labels: list[str] | None = None  # index -> label name
    build_s: float = 0.0
    error: str | None = None
    workaround: str | None = None
    command: str = ""
    threads: int | None = None  # None: the table's thread count


def error_line(text: str) -> str:
    """The line that says what went wrong: the last one naming an error (with the next two when it is a heading,
    as pydantic's "1 validation error for X" is), else the last line."""
    lines = [l.strip() for l in text.strip().splitlines() if l.strip()]
    named = [i for i, l in enumerate(lines) if re.search(r"(Error|Exception|Fail|error:)", l)]
    if not named:
        return (lines or ["(no output)"])[-1][:500]
    i = named[-1]
    line = lines[i] if len(lines[i]) > 80 else " ".join(lines[i : i + 3])
    return line[:500]


def run_peer(command: list[str], log: Path, env: dict | None = None) -> tuple[int, str]:
    started = time.perf_counter()
    # In the log's folder: Olive resolves config strings against its working directory (see olive_config).
    # Niced whatever the script runs at: builds share the host with the timing run's neighbours (training jobs).
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=log.parent,
                            preexec_fn=lambda: os.nice(10))
    log.write_text(f"$ {' '.join(command)}\nexit {result.returncode} after {time.perf_counter() - started:.0f} s\n"
                   f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}")
    return result.returncode, result.stdout + "\n" + result.stderr


def onnx_in(folder: Path) -> Path | None:
    found = sorted(p for p in folder.rglob("*.onnx")) if folder.is_dir() else []
    return found[0] if found else None


def peer_env() -> dict:
    # Offline host: the peers must not try the Hub. Their venv's bin first so olive finds its own python tools.
    return os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": f"{VENV / 'bin'}:{os.environ['PATH']}"}


def build_variant(variant: Variant, folder: Path, command: list[str], names: dict[str, str],
                  expect: str | None = None) -> Variant:
    """Run one peer command unless its model is already there; a non-zero exit or no model is a recorded failure."""
    # Shown without machine paths: the model folders as the build names them, peer outputs under WORK.
    shown = [Path(command[0]).name] + command[1:]
    for path, name in names.items():  # longest first: WORK sits inside OUT by default
        shown = [c.replace(path, name) for c in shown]
    variant.command = " ".join(shown)
    done, failed = folder / ".done", folder.parent / f"{folder.name}.error"
    if failed.exists() and json.loads(failed.read_text())["command"] == variant.command:
        # The same command failed before: its recorded error stands (delete the .error file to try again).
        recorded = json.loads(failed.read_text())
        variant.error, variant.workaround = recorded["error"], recorded["workaround"]
        print(f"· {variant.base}: {variant.name}: failed before ({variant.error[:80]}...)", flush=True)
        return variant
    if not done.exists():
        if folder.exists():
            shutil.rmtree(folder)
        print(f"· {variant.base}: {variant.name}", flush=True)
        started = time.perf_counter()
        code, output = run_peer(command, folder.parent / f"{folder.name}.log", peer_env())
        variant.build_s = time.perf_counter() - started
        if code != 0:
            variant.error = f"exit {code}: {error_line(output)}"
        elif onnx_in(folder) is None:
            # Olive's habit: exit 0 with nothing written. Not a model, so a failure.
            variant.error = f"exit 0 but no .onnx model written under its output folder ({error_line(output)})"
        if variant.error:
            variant.workaround = next((w for k, w in WORKAROUNDS.items() if k in output), None)
            print(f"  FAILED: {variant.error}", flush=True)
            failed.write_text(json.dumps(dataclasses.asdict(variant), default=str))
            return variant
        done.write_text(f"{variant.build_s:.1f}")
    else:
        variant.build_s = float(done.read_text())
    variant.path = onnx_in(folder) if expect is None else folder / expect
    return variant


def isas() -> list[str]:
    """optimum-cli's quantization presets this CPU can run."""
    _, flags = cpu_model_and_flags()
    if platform.machine() in ("aarch64", "arm64"):
        return ["arm64"]
    return [isa for isa, flag in (("avx2", "avx2"), ("avx512_vnni", "avx512_vnni")) if flag in flags]


def olive_config(model: Path, out: Path, static_calibration: Path | None, max_length: int) -> dict:
    """An Olive 0.13 workflow as its docs write one for a BERT-style classifier on CPU."""
    passes = {
        "conversion": {"type": "OnnxConversion", "target_opset": 17},
        "transformers_optimization": {"type": "OrtTransformersOptimization"},
    }
    data_configs = []
    if static_calibration is None:
        passes["quantization"] = {"type": "OnnxDynamicQuantization"}
    else:
        data_configs = [{
            # Not "calibration": Olive reads a data-config name that is also a folder in its working directory as
            # that folder's path, then rejects it ("DataConfig name /.../calibration should only contain letters...").
            "name": "peers_calibration",
            "type": "HuggingfaceContainer",
            "load_dataset_config": {"data_name": "csv", "data_files": str(static_calibration), "split": "train"},
            "pre_process_data_config": {"input_cols": ["text"], "label_col": "label", "max_length": max_length,
                                        "padding": "max_length", "max_samples": 10**6},
            "dataloader_config": {"batch_size": 1},
        }]
        passes["quantization"] = {"type": "OnnxStaticQuantization", "data_config": "peers_calibration",
                                  "quant_format": "QDQ"}
    return {
        "input_model": {"type": "HfModel", "model_path": str(model), "task": "text-classification",
                        "load_kwargs": {"attn_implementation": "eager"}},
        "systems": {"local_system": {"type": "LocalSystem",
                                     "accelerators": [{"device": "cpu", "execution_providers": ["CPUExecutionProvider"]}]}},
        "data_configs": data_configs,
        "passes": passes,
        "host": "local_system",
        "target": "local_system",
        "cache_dir": str(out.parent / "olive-cache"),
        "output_dir": str(out),
        "log_severity_level": 1,
    }


def peer_variants(build: Build, python: Path, work: Path, calibration_texts: int) -> list[Variant]:
    bin_ = python.parent
    variants = []
    names = dict(sorted({str(work): "WORK", str(build.out.resolve()): "OUT", str(build.out): "OUT"}.items(),
                        key=lambda kv: -len(kv[0])))
    train_texts, train_labels = read_split(build.data / "train.csv")
    # Calibration: the first N training texts in a fixed shuffled order (the same N for every model).
    order = np.random.default_rng(0).permutation(len(train_texts))[:calibration_texts]
    calibration = work / "calibration.csv"
    # Label ids, not names: Olive hands the label column to torch, which takes no strings (calibration ignores it).
    label2id = json.loads((build.teacher / "config.json").read_text())["label2id"]
    with open(calibration, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows([train_texts[i], label2id[train_labels[i]]] for i in order)
    for base, model in (("teacher", build.teacher), ("student", build.student)):
        if model is None:  # --prepare on a build whose student is not exported yet
            continue
        config = json.loads((model / "config.json").read_text())
        labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
        # Named after the stage folder (its cache key): a retrained teacher or student never reuses stale variants.
        root = work / model.parent.name
        root.mkdir(parents=True, exist_ok=True)
        made = []
        fp32 = build_variant(Variant("optimum fp32", "optimum-cli", base), root / "optimum-fp32",
                             [str(bin_ / "optimum-cli"), "export", "onnx", "--model", str(model), "--task",
                              "text-classification", str(root / "optimum-fp32")], names, "model.onnx")
        made.append(fp32)
        o2 = Variant("optimum O2", "optimum-cli", base)
        if fp32.path:
            o2 = build_variant(o2, root / "optimum-O2", [str(bin_ / "optimum-cli"), "onnxruntime", "optimize",
                                                         "--onnx_model", str(fp32.path.parent), "-O2", "-o",
                                                         str(root / "optimum-O2")], names)
        else:
            o2.error = "not built: the fp32 export failed"
        made.append(o2)
        for isa in isas():
            for source, name in ((fp32, f"optimum int8 {isa}"), (o2, f"optimum O2+int8 {isa}")):
                folder = root / name.replace(" ", "-").replace("+", "-")
                variant = Variant(name, "optimum-cli", base)
                if source.path is None:
                    variant.error = f"not built: {source.name} failed"
                else:
                    variant = build_variant(variant, folder, [
                        str(bin_ / "optimum-cli"), "onnxruntime", "quantize", "--onnx_model", str(source.path.parent),
                        f"--{isa}", "-o", str(folder)], names)
                made.append(variant)
        for static, name in ((None, "olive dynamic int8"), (calibration, "olive static int8")):
            folder = root / name.replace(" ", "-")
            folder.parent.mkdir(parents=True, exist_ok=True)
            config_path = root / f"{folder.name}.json"
            length = build.teacher_max_length if base == "teacher" else build.max_length
            config_path.write_text(json.dumps(olive_config(model, folder, static, length), indent=2))
            made.append(build_variant(Variant(name, "olive", base), folder,
                                      [str(bin_ / "olive"), "run", "--config", str(config_path)], names))
        for variant in made:
            variant.tokenizer, variant.labels = model, labels
        variants += made
    return variants


# ---------------------------------------------------------------- the timing run

def graph_ops(path: Path) -> dict:
    """Op counts of the file, and of the graph onnxruntime runs after its own optimizations (what was timed)."""
    import onnx
    import onnxruntime as ort

    def count(model) -> dict[str, int]:
        ops: dict[str, int] = {}
        for node in model.graph.node:
            ops[node.op_type] = ops.get(node.op_type, 0) + 1
        return ops

    in_file = count(onnx.load(str(path), load_external_data=False))
    options = ort.SessionOptions()
    options.log_severity_level = 3  # its warning that the dump is host-specific: this dump is only counted
    dumped = path.parent / f".{path.stem}.ort-optimized.onnx"
    options.optimized_model_filepath = str(dumped)
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    ran = count(onnx.load(str(dumped), load_external_data=False))
    dumped.unlink()
    for extra in path.parent.glob(f".{path.stem}.ort-optimized.onnx*"):
        extra.unlink()
    pick = lambda ops, names: {k: v for k, v in sorted(ops.items()) if k in names}  # noqa: E731
    return {"file": {"fused": pick(in_file, FUSED_OPS), "quantized": pick(in_file, QUANTIZED_OPS), "nodes": sum(in_file.values())},
            "ran": {"fused": pick(ran, FUSED_OPS), "quantized": pick(ran, QUANTIZED_OPS), "nodes": sum(ran.values())}}


def model_bytes(path: Path) -> int:
    """The .onnx file and any external-data file it names beside it."""
    import onnx

    size = path.stat().st_size
    model = onnx.load(str(path), load_external_data=False)
    seen = set()
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location" and entry.value not in seen:
                seen.add(entry.value)
                size += (path.parent / entry.value).stat().st_size
    return size


def tokenizer_for(folder: Path, max_length: int):
    return runtime.load_tokenizer(folder, runtime.preprocess_settings(folder, max_length))


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def stop_rule(n_texts: int, seconds: float) -> StopRule:
    # Every model runs every test text once (min_runs); a small test split is replayed up to 1000 runs, for the p95.
    return StopRule(warmup_runs=20, min_runs=n_texts, max_runs=max(n_texts, 1000), max_seconds=seconds,
                    ci_relative_halfwidth=0.02)


def runner(session, texts: list[str], tokenizer, seed: int) -> runtime.Runner:
    """The session over the test split at batch 1, real token lengths, in a fixed shuffled order (the bench's feeds)."""
    feeds = runtime.latency_feeds(texts, tokenizer, session, batch_size=1, length=None, seed=seed)
    return runtime.Runner(lambda feed: session.run(None, feed), feeds)


def time_runners(runners: dict[str, runtime.Runner], rule: StopRule, description: str) -> dict:
    """runtime.measure in this benchmark's short turns, with a progress bar: name -> runtime.Latency."""
    with progress() as bar:
        task = bar.add_task(description, total=rule.max_runs)
        return runtime.measure(runners, rule, on_round=lambda done, _: bar.update(task, completed=done), **INTERLEAVING)


def runs_on_a_text(variant: Variant, text: str, build: Build) -> bool:
    """Whether a built peer model answers at all. A tool can exit 0 with a model that fails at its first inference
    (Olive's static int8 of MPNet: its quantized relative-position buckets cast to an out-of-range Gather index);
    that is recorded as the variant's failure, with the runtime's error line, and the variant is not timed."""
    length = build.teacher_max_length if variant.base == "teacher" else build.max_length
    try:
        runtime.logits([text], tokenizer_for(variant.tokenizer, length), runtime.open_session(variant.path, 1))
        return True
    except Exception as err:  # onnxruntime raises its own RuntimeError subclasses (Fail, InvalidArgument, ...)
        variant.error = f"fails at inference: {error_line(str(err))}"
        print(f"· {variant.base}: {variant.name}: {variant.error[:120]}", flush=True)
        return False


def compare(build: Build, variants: list[Variant], threads: int, preset_threads: int, seconds: float) -> dict:
    texts, truth_names = read_split(build.test_file)
    shipped_labels = json.loads((build.shipped / "labels.json").read_text())
    shipped = Variant("edgetune shipped", "edgetune", "student", build.shipped / "model.onnx", build.shipped, shipped_labels)
    timed = [shipped] + [v for v in variants if v.path is not None and runs_on_a_text(v, texts[0], build)]
    if preset_threads != threads:
        # As the target preset runs it (its `threads`): the bundle's predict.py opens its session so too.
        timed.append(dataclasses.replace(shipped, name=f"edgetune shipped, preset {preset_threads} thread"
                                         + "s" * (preset_threads > 1), threads=preset_threads))
    rows, runners = {}, {}
    for v in timed:
        key = f"{v.base}: {v.name}"
        tokenizer = tokenizer_for(v.tokenizer, build.teacher_max_length if v.base == "teacher" else build.max_length)
        session = runtime.open_session(v.path, v.threads or threads)
        index = {name: i for i, name in enumerate(v.labels)}
        truth = np.array([index[t] for t in truth_names])
        predicted = runtime.logits(texts, tokenizer, session).argmax(-1)
        runners[key] = runner(session, texts, tokenizer, seed=0)  # seed 0 for all: one order of the texts for every model
        rows[key] = {"tool": v.tool, "base": v.base, "variant": v.name, "threads": v.threads or threads,
                     "model": os.path.relpath(v.path, REPO if v.tool == "edgetune" else v.path.parents[2]),
                     "size_bytes": model_bytes(v.path), "build_s": round(v.build_s, 1), "command": v.command,
                     "graph": graph_ops(v.path), "predictions": predicted, "correct": predicted == truth,
                     **classification_scores(truth, predicted, len(v.labels)),
                     "median_tokens": float(np.median([f["input_ids"].shape[1] for f in runners[key].feeds]))}
    before = load_avg()
    started = time.perf_counter()
    latency = time_runners(runners, stop_rule(len(texts), seconds), f"{build.label}: {len(runners)} models")
    wall = time.perf_counter() - started
    after = load_avg()
    for key, lat in latency.items():
        s = lat.summary()
        rows[key] |= {"p50": s["p50"], "p50_ci": s["p50_ci"], "p95": s["p95"], "p95_ci": s["p95_ci"], "runs": s["runs"]}
    base_key = "student: edgetune shipped"
    preset_key = next((k for k in rows if k.startswith("student: edgetune shipped, preset")), None)
    shipped_predictions, shipped_correct = rows[base_key]["predictions"], rows[base_key]["correct"]
    for key, row in rows.items():
        for name, reference in (("shipped", base_key), ("preset", preset_key)):
            if reference is not None and key != reference:
                for q in (95, 50):
                    ratio, lo, hi = ratio_interval(latency[reference].samples_ms, latency[key].samples_ms, q, 4000)
                    row[f"p{q}_vs_{name}"] = {"ratio": ratio, "ci": [lo, hi], "verdict": speed_verdict(lo, hi)}
        predictions, correct = row.pop("predictions"), row.pop("correct")
        if row["base"] == "student" and row["tool"] != "edgetune":
            # Paired over the same texts: this variant's accuracy minus the shipped model's, with its interval.
            row["accuracy_vs_shipped"] = paired_difference(correct, shipped_correct)
        # Only the student's variants share the shipped model's graph; a teacher agreeing less is no defect.
        row["agreement_with_shipped"] = float(np.mean(predictions == shipped_predictions)) if row["base"] == "student" else None
    return {"rows": rows, "timing": {"threads": threads, "preset_threads": preset_threads, "batch_size": 1, "max_length": build.max_length,
                                     "teacher_max_length": build.teacher_max_length,
                                     "test_texts": len(texts), "wall_s": round(wall, 1),
                                     "stopped_because": next(iter(latency.values())).stopped_because,
                                     "loadavg_before": before, "loadavg_after": after}}


def session_study(build: Build, fastest_peer: Variant | None, threads: int, seconds: float, work: Path) -> dict:
    """The same graph under session options, interleaved: what the runtime leaves on the table at batch 1."""
    import onnxruntime as ort

    texts, _ = read_split(build.test_file)
    model = build.shipped / "model.onnx"
    # A pre-optimized model in ORT format: onnxruntime's optimizations applied once, offline, as a device would ship it.
    ort_model = work / "shipped.basic.ort"
    offline = ort.SessionOptions()
    offline.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    offline.optimized_model_filepath = str(ort_model)
    offline.add_session_config_entry("session.save_model_format", "ORT")
    ort.InferenceSession(str(model), offline, providers=["CPUExecutionProvider"])
    # The shipped graph as onnxruntime would have run it had the residual sums stayed Adds: SkipLayerNormalization
    # fused at session start (what the target preset's fuse_skip_layer_norm: false avoids).
    skip_fused = work / "shipped.skip-layer-norm-fused.onnx"
    shutil.copy(model, skip_fused)
    residual_adds_as_sum(skip_fused, op_type="Add")

    def opts(n: int, level=None, spinning: bool = False, ort_format: bool = False):
        o = runtime.session_options(n)  # the runtime's options, then the one setting each configuration changes
        if level is not None:
            o.graph_optimization_level = level
        if spinning:
            o.add_session_config_entry("session.intra_op.allow_spinning", "1")
        if ort_format:
            o.add_session_config_entry("session.load_model_format", "ORT")
        return o

    levels = ort.GraphOptimizationLevel
    configs = {
        f"shipped, {threads} threads (the peers table)": (model, opts(threads)),
        "shipped, 1 thread": (model, opts(1)),
        "shipped, 1 thread, basic optimizations only": (model, opts(1, levels.ORT_ENABLE_BASIC)),
        "shipped, 1 thread, pre-optimized ORT format": (ort_model, opts(1, levels.ORT_DISABLE_ALL, ort_format=True)),
        "shipped graph, SkipLayerNormalization fused, 1 thread": (skip_fused, opts(1)),
    }
    if threads > 1:
        configs[f"shipped, {threads} threads, basic optimizations only"] = (model, opts(threads, levels.ORT_ENABLE_BASIC))
    if fastest_peer is not None:
        configs[f"{fastest_peer.name}, {threads} threads"] = (fastest_peer.path, opts(threads))
        configs[f"{fastest_peer.name}, 1 thread"] = (fastest_peer.path, opts(1))
    shipped_tokenizer = tokenizer_for(build.shipped, build.max_length)  # the three shipped-graph files share it
    tokenizers = {path: shipped_tokenizer for path in (model, ort_model, skip_fused)}
    if fastest_peer is not None:
        tokenizers[fastest_peer.path] = tokenizer_for(fastest_peer.tokenizer, build.max_length)
    runners = {}
    for name, (path, options) in configs.items():
        # Not runtime.open_session: each configuration brings options of its own.
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        runners[name] = runner(session, texts, tokenizers[path], seed=1)  # another order than the peers table's
    before = load_avg()
    latency = time_runners(runners, stop_rule(len(texts), seconds), f"{build.label}: session options")
    after = load_avg()
    reference = f"shipped, {threads} threads (the peers table)"
    rows = {}
    for name, lat in latency.items():
        s = lat.summary()
        ratio, lo, hi = ratio_interval(latency[reference].samples_ms, lat.samples_ms, 95, 4000)
        p50, p50_lo, p50_hi = ratio_interval(latency[reference].samples_ms, lat.samples_ms, 50, 4000)
        rows[name] = {"p50": s["p50"], "p50_ci": s["p50_ci"], "p95": s["p95"], "p95_ci": s["p95_ci"], "runs": s["runs"],
                      "p95_ratio": [ratio, lo, hi], "p50_ratio": [p50, p50_lo, p50_hi], "verdict": speed_verdict(lo, hi)}
    if fastest_peer is not None:
        # The shipped model at one thread (the x86 presets' choice) against the peer's graph at both thread counts.
        best = "shipped, 1 thread"
        for peer in (f"{fastest_peer.name}, {threads} threads", f"{fastest_peer.name}, 1 thread"):
            ratio, lo, hi = ratio_interval(latency[peer].samples_ms, latency[best].samples_ms, 95, 4000)
            p50, p50_lo, p50_hi = ratio_interval(latency[peer].samples_ms, latency[best].samples_ms, 50, 4000)
            rows[peer]["best_shipped_over_this"] = {"shipped": best, "p95_ratio": [ratio, lo, hi],
                                                    "p50_ratio": [p50, p50_lo, p50_hi]}
    ort_model.unlink(missing_ok=True)
    skip_fused.unlink(missing_ok=True)
    return {"rows": rows, "loadavg_before": before, "loadavg_after": after, "reference": reference}


# ---------------------------------------------------------------- results

def host_description(threads: int) -> dict:
    import importlib.metadata

    host = runtime.describe_host(threads, "CPUExecutionProvider")
    versions = {"onnxruntime": host["onnxruntime"], "onnx": importlib.metadata.version("onnx")}
    peers = subprocess.run([str(VENV / "bin" / "python"), "-c",
                            "import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in "
                            "('optimum', 'optimum-onnx', 'olive-ai', 'onnxruntime', 'transformers', 'torch')}))"],
                           capture_output=True, text=True)
    return {"cpu": host["cpu"], "arch": host["arch"], "flags": host["flags"], "cores": host["cores"],
            "threads": host["threads"], "edgetune_venv": versions,
            "peers_venv": json.loads(peers.stdout) if peers.returncode == 0 else peers.stderr[-300:]}


def failures(variants: list[Variant]) -> list[dict]:
    return [{"base": v.base, "variant": v.name, "command": v.command, "error": v.error, "workaround": v.workaround}
            for v in variants if v.error]


def plot(label: str, result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"edgetune": "tab:red", "optimum-cli": "tab:blue", "olive": "tab:green"}
    fig, ax = plt.subplots(figsize=(10, 5.5))
    for key, row in result["comparison"]["rows"].items():
        ax.scatter(row["p95"], row["accuracy"], s=row["size_bytes"] / 1e6 * 4, alpha=0.5, color=colors[row["tool"]],
                   marker="o" if row["base"] == "student" else "s", edgecolors="black", linewidths=0.5)
        ax.errorbar(row["p95"], row["accuracy"], xerr=[[row["p95"] - row["p95_ci"][0]], [row["p95_ci"][1] - row["p95"]]],
                    color=colors[row["tool"]], alpha=0.6, capsize=2)
        ax.annotate(key.replace("student: ", "S: ").replace("teacher: ", "T: "), (row["p95"], row["accuracy"]),
                    fontsize=6, xytext=(4, 3), textcoords="offset points")
    for tool, color in colors.items():
        ax.scatter([], [], color=color, label=tool)
    ax.scatter([], [], marker="s", color="gray", label="teacher (square)")
    ax.scatter([], [], marker="o", color="gray", label="student (circle)")
    ax.set_xscale("log")
    ax.set_xlabel(f"p95 latency, ms (batch 1, {result['comparison']['timing']['threads']} threads; log scale; bar: 95% CI)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{label}: accuracy vs p95 latency (marker area ∝ size)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))  # outside: no point hides behind it
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def ms(x: float) -> str:
    return f"{x:.2f}"


def markdown(results: dict) -> str:
    lines = ["# edgetune against optimum-cli and Olive", "",
             "Made by `benchmarks/peers/run.py` (see its docstring and `benchmarks/peers/README.md`); do not edit by hand.",
             f"Every model of a dataset was timed in one process, round-robin in turns of {INTERLEAVING['block']} runs "
             f"(after {INTERLEAVING['rewarm']} untimed ones) over the whole test",
             "split at batch 1 with real token lengths (truncated where the build truncated each model), the same",
             "intra-op thread count and spin-waiting off in every session. p95 intervals: 95% bootstrap; the ratio",
             "to edgetune's shipped model has a bootstrap interval of its own. `ran`: op counts of the graph onnxruntime",
             "executed after its own optimizations (F fused ops, Q quantization ops). On a host shared with other jobs",
             "(see each section's load average) a p95 includes the times the scheduler took the core away: read the p50",
             "beside it, and compare models only within one section.", ""]
    for label, r in results.items():
        c, t = r["comparison"], r["comparison"]["timing"]
        host = r["host"]
        lines += [f"## {label}", "",
                  f"Build `{r['build']['out']}` (target {r['build']['target']}), data `{r['build']['data']}`, test split "
                  f"`{r['build']['test_file']}` ({t['test_texts']} texts), truncated at {t['max_length']} tokens for the student's "
                  f"variants and {t.get('teacher_max_length', t['max_length'])} for the teacher's (each as its build ran it). Teacher "
                  f"{r['build']['teacher_layers']} layers, student {r['build']['student_layers']} layers. Measured "
                  f"{r['measured']} on {host['cpu']} ({host['arch']}, {host['cores']} cores; {', '.join(host['flags'])}), "
                  f"{t['threads']} intra-op threads, onnxruntime {host['edgetune_venv']['onnxruntime']}; peers: "
                  + (", ".join(f"{k} {v}" for k, v in host["peers_venv"].items()) if isinstance(host["peers_venv"], dict) else "?")
                  + f". Load average before/after: {t['loadavg_before']} / {t['loadavg_after']}; {t['wall_s']} s of "
                  f"timing, {t['stopped_because']}.", "",
                  f"![accuracy vs p95]({r['plot']})", "",
                  "| base | tool | variant | accuracy | macro-F1 | p50 ms | p95 ms (95% CI) | p95 / shipped (95% CI) | size MB | ran: F / Q ops |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        rows = sorted(c["rows"].items(), key=lambda kv: (kv[1]["base"] != "student", kv[1]["p95"]))
        for key, row in rows:
            ratio = row.get("p95_vs_shipped")
            ran = row["graph"]["ran"]
            ops = lambda d: " ".join(f"{k}×{v}" for k, v in d.items()) or "–"  # noqa: E731
            bold = "**" if row["tool"] == "edgetune" else ""
            lines.append(
                f"| {row['base']} | {row['tool']} | {bold}{row['variant']}{bold} | {row['accuracy']:.4f} | {row['macro_f1']:.4f} | "
                f"{ms(row['p50'])} | {ms(row['p95'])} ({ms(row['p95_ci'][0])}–{ms(row['p95_ci'][1])}) | "
                + (f"{ratio['ratio']:.2f} ({ratio['ci'][0]:.2f}–{ratio['ci'][1]:.2f})" if ratio else "1") +
                f" | {row['size_bytes'] / 1e6:.1f} | F: {ops(ran['fused'])}; Q: {ops(ran['quantized'])} |")
        if r["failures"]:
            lines += ["", "Peer variants that failed (error line as the tool printed it; OUT is the build folder, WORK the "
                      "peers' work folder, OUT/peers by default, where each variant's full log is):", ""]
            for f in r["failures"]:
                lines.append(f"- {f['base']}, {f['variant']} (`{f['command']}`): `{f['error']}`"
                             + (f". Workaround: {f['workaround']}" if f["workaround"] else ". No workaround known."))
        lines += ["", "### Verdicts", ""] + [f"- {s}" for s in r["verdicts"]]
        s = r.get("session_study")
        if s:
            lines += ["", "### Same graph: session options (one more interleaved run)", "",
                      f"Load average before/after: {s['loadavg_before']} / {s['loadavg_after']}. Ratios are to "
                      f"`{s['reference']}`.", "",
                      "| configuration | p50 ms (95% CI) | p95 ms (95% CI) | p50 ratio (95% CI) | p95 ratio (95% CI) |",
                      "|---|---|---|---|---|"]
            for name, row in s["rows"].items():
                lines.append(f"| {name} | {ms(row['p50'])} ({ms(row['p50_ci'][0])}–{ms(row['p50_ci'][1])}) | "
                             f"{ms(row['p95'])} ({ms(row['p95_ci'][0])}–{ms(row['p95_ci'][1])}) | "
                             f"{row['p50_ratio'][0]:.2f} ({row['p50_ratio'][1]:.2f}–{row['p50_ratio'][2]:.2f}) | "
                             f"{row['p95_ratio'][0]:.2f} ({row['p95_ratio'][1]:.2f}–{row['p95_ratio'][2]:.2f}) |")
            for name, row in s["rows"].items():
                if "best_shipped_over_this" in row:
                    b = row["best_shipped_over_this"]
                    lines.append(f"\n`{b['shipped']}` / `{name}`: p50 {b['p50_ratio'][0]:.2f} "
                                 f"({b['p50_ratio'][1]:.2f}–{b['p50_ratio'][2]:.2f}), p95 {b['p95_ratio'][0]:.2f} "
                                 f"({b['p95_ratio'][1]:.2f}–{b['p95_ratio'][2]:.2f}).")
        lines.append("")
    return "\n".join(lines)


def accuracy_against(shipped: dict, peer: dict) -> tuple[str, str]:
    """("better" | "equal" | "worse", a clause): shipped minus peer accuracy with its paired interval over texts;
    "equal" when the interval contains 0 (a difference the test split cannot tell from none, or none at all)."""
    paired = peer.get("accuracy_vs_shipped")
    if paired is None:  # results written before the paired interval was recorded
        return ("better" if shipped["accuracy"] >= peer["accuracy"] else "worse"), "accuracy unpaired"
    diff, lo, hi = (0.0 - x * 100 for x in (paired["gain"], paired["ci"][1], paired["ci"][0]))  # 0.0 -: no "-0.00"
    word = "better" if diff > 0 else "equal" if hi >= 0 else "worse"
    return word, (f"accuracy shipped minus peer {diff:+.2f} points [{lo:+.2f}, {hi:+.2f}] paired over texts "
                  f"({paired['only_b_right']} texts only shipped gets right, {paired['only_a_right']} only the peer): {word}")


def verdicts(rows: dict) -> list[str]:
    """Plain sentences computed from the table: the same-student and the end-to-end comparisons."""
    shipped = rows["student: edgetune shipped"]
    out = []
    peers_student = {k: r for k, r in rows.items() if r["base"] == "student" and r["tool"] != "edgetune"}
    if peers_student:
        # Fastest by p50: on a loaded host the p95 order of near-equal models is the scheduler's, the p50 order is not.
        fastest = min(peers_student, key=lambda k: peers_student[k]["p50"])
        r = rows[fastest]
        ratio = r["p95_vs_shipped"]
        inverse = [1 / ratio["ratio"], 1 / ratio["ci"][1], 1 / ratio["ci"][0]]
        p50 = r.get("p50_vs_shipped", ratio)
        p50_inverse = [1 / p50["ratio"], 1 / p50["ci"][1], 1 / p50["ci"][0]]
        accuracy_word, accuracy_text = accuracy_against(shipped, r)
        meets = inverse[2] <= 0.9 and accuracy_word != "worse"
        out.append(f"Same student (same weights, each tool's own graph of it), same threads ({r['threads']}): fastest peer variant is {r['variant']} ({r['tool']}), "
                   f"p95 {ms(r['p95'])} ms [{ms(r['p95_ci'][0])}, {ms(r['p95_ci'][1])}] at accuracy {r['accuracy']:.4f}; "
                   f"edgetune's shipped model p95 {ms(shipped['p95'])} ms [{ms(shipped['p95_ci'][0])}, {ms(shipped['p95_ci'][1])}] "
                   f"at {shipped['accuracy']:.4f}: shipped/peer p95 = {inverse[0]:.2f} [{inverse[1]:.2f}, {inverse[2]:.2f}], p50 = "
                   f"{p50_inverse[0]:.2f} [{p50_inverse[1]:.2f}, {p50_inverse[2]:.2f}]; {accuracy_text} "
                   f"({'meets' if meets else 'does not meet'} the bar: p95 ratio's upper bound ≤ 0.9 at equal-or-better "
                   "accuracy, equal meaning a paired interval that contains 0).")
        preset = next((row for k, row in rows.items() if k.startswith("student: edgetune shipped, preset")), None)
        if preset is not None:
            ratio = r["p95_vs_preset"]
            inverse = [1 / ratio["ratio"], 1 / ratio["ci"][1], 1 / ratio["ci"][0]]
            p50 = r.get("p50_vs_preset", ratio)
            p50_inverse = [1 / p50["ratio"], 1 / p50["ci"][1], 1 / p50["ci"][0]]
            meets = inverse[2] <= 0.9 and accuracy_word != "worse"  # the preset row is the shipped model
            out.append(f"As the target preset runs it ({preset['threads']} thread(s); the peer at {r['threads']}): "
                       f"p95 {ms(preset['p95'])} ms [{ms(preset['p95_ci'][0])}, {ms(preset['p95_ci'][1])}], "
                       f"shipped/peer p95 = {inverse[0]:.2f} [{inverse[1]:.2f}, {inverse[2]:.2f}], p50 = "
                       f"{p50_inverse[0]:.2f} [{p50_inverse[1]:.2f}, {p50_inverse[2]:.2f}] "
                       f"({'meets' if meets else 'does not meet'} the bar; the session-options table below times the peer "
                       "at the preset's thread count too).")
    teachers = {k: r for k, r in rows.items() if r["base"] == "teacher"}
    for tool in sorted({r["tool"] for r in teachers.values()}):
        mine = {k: r for k, r in teachers.items() if r["tool"] == tool}
        best_acc = max(r["accuracy"] for r in mine.values())
        # A tool's best teacher variant: the fastest (p50) within 0.5 points of its most accurate.
        k = min((k for k, r in mine.items() if r["accuracy"] >= best_acc - 0.005), key=lambda k: mine[k]["p50"])
        r = mine[k]
        speed = r["p95_vs_shipped"]
        acc = (shipped["accuracy"] - r["accuracy"]) * 100
        out.append(f"End to end vs {tool}'s best teacher variant ({r['variant']}: accuracy {r['accuracy']:.4f}, p95 "
                   f"{ms(r['p95'])} ms, {r['size_bytes'] / 1e6:.1f} MB): edgetune's shipped student is "
                   f"{speed['ratio']:.1f}x faster at p95 [{speed['ci'][0]:.1f}, {speed['ci'][1]:.1f}], "
                   f"{r['size_bytes'] / shipped['size_bytes']:.1f}x smaller, and "
                   + (f"{abs(acc):.2f} points {'more' if acc > 0 else 'less'} accurate" if abs(acc) >= 0.005 else "as accurate")
                   + f" ({shipped['accuracy']:.4f}); "
                   + ("edgetune wins on speed and size and on accuracy." if acc >= 0 else
                      "edgetune wins on speed and size; the peer wins on accuracy."))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", nargs=4, action="append", required=True, metavar=("LABEL", "OUT", "TARGET", "DATA"))
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: the target's, capped by this host's cores)")
    parser.add_argument("--seconds", type=float, default=600, help="time cap of each interleaved run, after every text ran once")
    parser.add_argument("--calibration", type=int, default=128, help="training texts that calibrate Olive's static int8")
    parser.add_argument("--work", default=None, help="where peer models go (default: OUT/peers)")
    parser.add_argument("--no-session-study", action="store_true")
    parser.add_argument("--prepare", action="store_true",
                        help="only build the peer variants, from whatever the build has finished (its teacher while the "
                             "student trains): the timing run later reuses them")
    args = parser.parse_args()
    from edgetune.console import quiet_libraries
    from edgetune.targets import load_target

    quiet_libraries()
    python = ensure_venv()
    results_file = RESULTS / "peers.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    for label, out, target_name, data in args.build:
        if args.prepare:
            finished = (Path(out) / target_name / "bundle" / "manifest.json").is_file()
            build = (read_build if finished else unfinished_build)(label, out, target_name, data)
            work = Path(args.work) / label if args.work else build.out / "peers"
            work.mkdir(parents=True, exist_ok=True)
            made = peer_variants(build, python, work, args.calibration)
            print(f"{label}: {sum(v.path is not None for v in made)} peer variants built, {len(failures(made))} failed")
            continue
        build = read_build(label, out, target_name, data)
        target = load_target(target_name)
        # The table's thread count is onnxruntime's default on the target (a thread per core, capped by this host's):
        # what a peer tool's user runs. The target preset's own choice is timed beside it when it differs.
        cores = os.cpu_count() or 1
        threads = args.threads or min(target.cores, cores)
        preset_threads = min(target.intra_op_threads, cores)
        work = Path(args.work) / label if args.work else build.out / "peers"
        work.mkdir(parents=True, exist_ok=True)
        variants = peer_variants(build, python, work, args.calibration)
        comparison = compare(build, variants, threads, preset_threads, args.seconds)
        rows = comparison["rows"]
        peers_student = [v for v in variants if v.base == "student" and v.path is not None and not v.error]
        fastest = min(peers_student, key=lambda v: rows[f"student: {v.name}"]["p50"]) if peers_student else None
        study = None if args.no_session_study else session_study(build, fastest, threads, args.seconds, work)
        plot_path = RESULTS / f"peers-{label}.png"
        result = {
            "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "build": {"out": shown(build.out), "target": target_name, "data": shown(build.data, outside="DATA"),
                      "test_file": shown(build.test_file, outside="DATA", keep=2), "teacher_layers": build.teacher_layers,
                      "student_layers": build.student_layers},
            "host": host_description(threads),
            "comparison": comparison,
            "failures": failures(variants),
            "verdicts": verdicts(rows),
            "session_study": study,
            "plot": plot_path.name,
        }
        plot(label, result, plot_path)
        results[label] = result
        results_file.write_text(json.dumps(results, indent=2) + "\n")
        (RESULTS / "peers.md").write_text(markdown(results))
        for line in result["verdicts"]:
            print(line)
    if not args.prepare:
        print(f"wrote {results_file.relative_to(REPO)} and peers.md")


if __name__ == "__main__":
    main()
