"""Every quantization method side by side on one export: accuracy, macro-F1, p95 latency (interleaved), size.

    .venv/bin/python benchmarks/quantization/run.py EXPORT_DIR DATA_DIR [--label NAME] [--seconds 90]

EXPORT_DIR is an export stage folder of a build (`OUT/cache/export-*`: model.onnx, merged/, tokenizer, labels.json);
DATA_DIR the build's data folder (train.csv, test.csv, optional validation.csv; the default recipe's is
edgetune/recipes/smart_home). From the one fp32 export it builds, with edgetune's own quantize code:

  fp32                 the export as is
  fp32 + fusions       onnxruntime's transformer fusions (what int8 dynamic starts from)
  int8 dynamic         fused, weights int8, activations quantized at run time; and once more unfused
  int8 static <cal>    QDQ, calibrated with minmax / entropy / percentile on 128 train texts (unfused graph)
  int4 <algorithm>     weight-only MatMulNBits, block 32, on the graph fused without attention and embedding
                       fusions (as the stage does for int4): rtn, hqq, gptq (128 train texts); int8 compute
                       (accuracy_level 4), and rtn once more with fp32 compute (accuracy_level 0)
  int8 dynamic, pruned vocabulary   export.prune_vocab on the merged model (keep_first 0 and --keep-first)

and measures on the test split: accuracy, macro-F1 and agreement with fp32 (batches of 32, the bundle's tokenizer
path), then latency at batch 1 with --threads intra-op threads: every model runs the same real test texts, one
text per round, round-robin in a rotating order, after warm-up, for --seconds. It reports p50, p95 with its 95%
bootstrap interval, and the p95 ratio to fp32 and to int8 dynamic with a paired bootstrap interval over rounds
(a round's runs share the machine's state). Intra-op thread spinning is off, as it must be when sessions take turns
in one process. Results are merged by --label into benchmarks/results/quantization.json
and quantization.md, so runs on several datasets sit side by side.

The preset is the host's matching target profile (x86-avx512-vnni with VNNI, else x86-avx2; --target to choose).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from benchmarks.result_paths import shown
RESULTS = REPO / "benchmarks" / "results"


from edgetune import quantizers, runtime
from edgetune.console import quiet_libraries
from edgetune.metrics import classification_scores
from edgetune.quantizers.graph import fuse
from edgetune.quantizers.int8_dynamic import int8_dynamic
from edgetune.recipe import load_recipe
from edgetune.runtime import cpu_model_and_flags, percentile_ci, speed_verdict
from edgetune.stages import quantize as stage
from edgetune.targets import load_target


@dataclasses.dataclass
class Variant:
    name: str
    path: Path
    folder: Path  # tokenizer.json + labels.json beside the model
    build_s: float = 0.0
    note: str = ""


def host_target() -> str:
    import platform

    _, flags = cpu_model_and_flags()
    if platform.machine() in ("aarch64", "arm64"):
        return "rpi5"
    return "x86-avx512-vnni" if "avx512_vnni" in flags else "x86-avx2"


def export_length(export: Path, data: Path) -> int:
    """The token length the export's build ran at: its data.max_length, with "auto" resolved as the stages do."""
    from transformers import AutoTokenizer

    from edgetune.data import load_dataset, sequence_length

    configured = json.loads((export / "manifest.json").read_text())["material"]["config"]["data"]["max_length"]
    recipe = load_recipe(None, data_dir=data, overrides=(f"data.max_length={configured}",))
    train = load_dataset(recipe.data, recipe.seed).train.texts
    return sequence_length(recipe.data, AutoTokenizer.from_pretrained(export), train).tokens


def build_variants(export: Path, data: Path, work: Path, target_name: str, keep_first: int,
                   max_length: int) -> list[Variant]:
    from transformers import AutoTokenizer

    from edgetune.training import input_names_of

    recipe = load_recipe(None, data_dir=data, overrides=(f"data.max_length={max_length}",))
    preset = load_target(target_name).quantization
    config = json.loads((export / "merged" / "config.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(export)
    names = input_names_of(tokenizer)
    texts, origin = stage.calibration_texts(recipe)
    base = recipe.quantize
    raw = export / "model.onnx"
    record = work / "built.json"  # a rerun with the same --work reuses what was built (for export's key)
    built = json.loads(record.read_text()) if record.exists() else {}
    built = built if built.get("export") == str(export) else {"export": str(export), "variants": {}}
    variants = [Variant("fp32", raw, export)]

    def reuse_or_build(name: str, make) -> None:
        known = built["variants"].get(name)
        if known and Path(known["path"]).is_file():
            print(f"reusing {name} from {work}", flush=True)
            variant = Variant(name, Path(known["path"]), Path(known["folder"]), known["build_s"], known["note"])
        else:
            print(f"building {name} ...", flush=True)
            variant = make()
            built["variants"][name] = {"path": str(variant.path), "folder": str(variant.folder),
                                       "build_s": variant.build_s, "note": variant.note}
            record.write_text(json.dumps(built, indent=2))
        variants.append(variant)

    def fusions() -> Variant:
        started = time.perf_counter()
        fuse(raw, work / "fused.onnx", config, skip_layer_norm=preset.fuse_skip_layer_norm)
        return Variant("fp32 + fusions", work / "fused.onnx", export, time.perf_counter() - started)

    reuse_or_build("fp32 + fusions", fusions)
    fused = work / "fused.onnx"
    weight_only = work / "fused-weight-only.onnx"  # what the stage fuses for int4: attention and embeddings unfused
    if not weight_only.is_file():
        fuse(raw, weight_only, config, skip_layer_norm=preset.fuse_skip_layer_norm, weight_only=True)

    def add(name: str, source: Path, note: str = "", **changes) -> None:
        def make() -> Variant:
            q = dataclasses.replace(base, **changes)
            path = work / (name.replace(" ", "-").replace(",", "").replace("(", "").replace(")", "") + ".onnx")
            started = time.perf_counter()
            quantizer = quantizers.get(q.method)(q, preset, source, work)
            quantizer.prepare(texts, tokenizer, names, max_length)
            quantizer.quantize(path)
            (work / "calibration.json").unlink(missing_ok=True)
            return Variant(name, path, export, time.perf_counter() - started, note)

        reuse_or_build(name, make)

    add("int8 dynamic", fused, method="int8-dynamic")
    add("int8 dynamic, no fusions", raw, method="int8-dynamic")
    for method in ("minmax", "entropy", "percentile"):
        add(f"int8 static {method}", raw, f"{len(texts)} texts from {origin}", method="int8-static",
            calibration_method=method)
    for algorithm in ("rtn", "hqq", "gptq"):
        add(f"int4 {algorithm}", weight_only, f"{len(texts)} calibration texts" if algorithm == "gptq" else "",
            method="int4", int4_algorithm=algorithm)
    add("int4 rtn, fp32 compute", weight_only, "accuracy_level 0", method="int4", int4_algorithm="rtn",
        int4_accuracy_level=0)
    for first in sorted({0, keep_first}):
        reuse_or_build(f"int8 dynamic, pruned vocab (keep_first {first})",
                       lambda first=first: pruned_variant(export, recipe, work, config, preset, first))
    return variants


def pruned_variant(export: Path, recipe, work: Path, config: dict, preset, keep_first: int) -> Variant:
    """The export stage's vocabulary pruning on the merged model, re-exported, fused, int8 dynamic."""
    import warnings

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from edgetune.data import encode, load_dataset, pad_batch
    from edgetune.stages import export as export_stage
    from edgetune.training import input_names_of

    name = f"int8 dynamic, pruned vocab (keep_first {keep_first})"
    started = time.perf_counter()
    folder = work / f"pruned-{keep_first}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    model = AutoModelForSequenceClassification.from_pretrained(export / "merged").eval()
    tokenizer = AutoTokenizer.from_pretrained(export)
    names = input_names_of(tokenizer)
    data = load_dataset(recipe.data, recipe.seed)
    recipe = dataclasses.replace(recipe, export=dataclasses.replace(recipe.export, prune_vocab=True,
                                                                    prune_keep_first=keep_first))
    tokenizer.save_pretrained(folder / "scratch" / "original")
    tokenizer, stats = export_stage.prune_vocabulary(model, tokenizer, data, recipe, folder / "scratch")
    tokenizer.save_pretrained(folder)
    shutil.copy(export / "labels.json", folder / "labels.json")
    sample = pad_batch(encode(tokenizer, data.test.texts[:4], [0] * 4, recipe.data.max_length).input_ids,
                       tokenizer.pad_token_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_stage.export_onnx(model, names, folder / "fp32.onnx", recipe.export.opset, sample)
    fuse(folder / "fp32.onnx", folder / "fused.onnx", config, skip_layer_norm=preset.fuse_skip_layer_norm)
    int8_dynamic(folder / "fused.onnx", folder / "model.onnx", preset)
    note = f"{int(stats['pruned_vocab_size'])} of {int(stats['original_vocab_size'])} tokens"
    return Variant(name, folder / "model.onnx", folder, time.perf_counter() - started, note)


def paired_ratio(a: np.ndarray, b: np.ndarray, q: float = 95, resamples: int = 2000) -> tuple[float, float, float]:
    """p_q(a) / p_q(b) over paired rounds, with a 95% bootstrap interval resampling rounds."""
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(a), size=(resamples, len(a)))
    ratios = np.percentile(a[picks], q, axis=1) / np.percentile(b[picks], q, axis=1)
    lo, hi = np.percentile(ratios, [2.5, 97.5])
    return float(np.percentile(a, q) / np.percentile(b, q)), float(lo), float(hi)


def measure(variants: list[Variant], texts: list[str], truth: np.ndarray, labels: list[str], threads: int,
            seconds: float, max_length: int) -> dict:
    # Sessions take turns in one process: runtime.session_options turns spinning off, without which a session's
    # idle pool threads spin on the cores the next session needs.
    sessions = {v.name: runtime.open_session(v.path, threads) for v in variants}
    tokenizers = {v.name: runtime.load_tokenizer(v.folder, runtime.preprocess_settings(v.folder, max_length))
                  for v in variants}
    predictions = {v.name: runtime.logits(texts, tokenizers[v.name], sessions[v.name]).argmax(-1) for v in variants}
    order = np.random.default_rng(0).permutation(len(texts))
    runners = [runtime.Runner(lambda feed, s=sessions[v.name]: s.run(None, feed),
                              [runtime.encode([texts[i]], tokenizers[v.name], sessions[v.name]) for i in order])
               for v in variants]
    runtime.warm_up(runners, 20)
    print(f"timing {len(variants)} models round-robin for {seconds:g} s ...", flush=True)
    # One run per model per round, so the k-th samples of all models share a round: paired_ratio pairs them.
    samples, _ = runtime.time_interleaved(runners, lambda _, elapsed: "time up" if elapsed >= seconds else None,
                                          block=1)
    rounds = len(samples[0])
    results = {}
    arrays = {v.name: np.asarray(s) for v, s in zip(variants, samples)}
    for v in variants:
        x = arrays[v.name]
        scores = classification_scores(truth, predictions[v.name], len(labels))
        results[v.name] = {
            "accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"],
            "agreement_with_fp32": float(np.mean(predictions[v.name] == predictions["fp32"])),
            "p50_ms": float(np.percentile(x, 50)), "p95_ms": float(np.percentile(x, 95)),
            "p95_ci_ms": list(percentile_ci(x, 95, resamples=2000)),
            "p95_vs_fp32": paired_ratio(x, arrays["fp32"]),
            "p95_vs_int8_dynamic": paired_ratio(x, arrays["int8 dynamic"]),
            "size_bytes": v.path.stat().st_size, "build_seconds": round(v.build_s, 1), "note": v.note,
        }
    return {"rounds": rounds, "models": results}


def verdict(ratio: list[float]) -> str:
    value, lo, hi = ratio
    return f"{speed_verdict(lo, hi)} ({value:.2f}x, 95% CI [{lo:.2f}, {hi:.2f}])"


def render(runs: dict) -> str:
    intro = ("Written by `benchmarks/quantization/run.py` (see its docstring for what each row is). Accuracy and "
             "macro-F1 on the whole test split; agreement = identical predictions to fp32; latency at batch 1 on real "
             "test texts, all models round-robin in one process (so the machine's load falls on all alike); p95 ratios "
             "with a paired bootstrap 95% interval over rounds. Host numbers, not a target device's.")
    lines = ["# Quantization methods side by side", "", intro, ""]
    for label, run in runs.items():
        h = run["host"]
        export = (f"Export `{run['export']}` ({run['test_examples']} test texts, max length {run['max_length']}); "
                  f"preset `{run['target']}` ({run['preset']}); calibration: {run['calibration']}.")
        host = (f"Host: {h['cpu']} ({h['arch']}, {h['cores']} cores, {', '.join(h['flags'])}), onnxruntime "
                f"{h['onnxruntime']}, {run['threads']} intra-op threads (spinning off), {run['date']}; load average "
                f"{h['load_before']} before, {h['load_after']} after; {run['rounds']} rounds in {run['seconds']:g} s.")
        lines += [f"## {label}", "", export, "", host, "",
                  ("| model | accuracy | macro-F1 | agreement | p50 ms | p95 ms [95% CI] | p95 vs fp32 "
                   "| p95 vs int8 dynamic | size MB | build s |"),
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for name, m in run["models"].items():
            r1, r2 = m["p95_vs_fp32"], m["p95_vs_int8_dynamic"]
            lines.append(
                f"| {name} | {m['accuracy']:.4f} | {m['macro_f1']:.4f} | {m['agreement_with_fp32']:.3f} | "
                f"{m['p50_ms']:.2f} | {m['p95_ms']:.2f} [{m['p95_ci_ms'][0]:.2f}, {m['p95_ci_ms'][1]:.2f}] | "
                f"{r1[0]:.2f} [{r1[1]:.2f}, {r1[2]:.2f}] | {r2[0]:.2f} [{r2[1]:.2f}, {r2[2]:.2f}] | "
                f"{m['size_bytes'] / 1e6:.1f} | {m['build_seconds']:.1f} |")
        lines.append("")
        for name, m in run["models"].items():
            if name.startswith("int4"):
                lines.append(f"- {name} vs int8 dynamic on this host, p95: {verdict(m['p95_vs_int8_dynamic'])}.")
            if name.startswith("int8 dynamic, pruned"):
                lines.append(f"- {name}: {m['note']}.")
        fused = run["models"]["fp32 + fusions"]["p95_vs_fp32"]
        lines += [f"- Fusions alone vs fp32, p95: {verdict(fused)}.", ""]
        if run.get("notes"):
            lines += [f"- {n}" for n in run["notes"]] + [""]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("export", type=Path, help="an export stage folder: OUT/cache/export-*")
    parser.add_argument("data", type=Path, help="the build's data folder (train.csv, test.csv)")
    parser.add_argument("--label", help="name of this run in the results (default: the data folder's name)")
    parser.add_argument("--target", default=None, help="target profile for the int8 preset (default: the host's)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=90.0, help="interleaved timing budget")
    parser.add_argument("--keep-first", type=int, default=10000, help="export.prune_keep_first of the second pruned row")
    parser.add_argument("--note", action="append", default=[], help="a sentence to print under the run's table")
    parser.add_argument("--work", type=Path, help="keep the built models here, and reuse them on a rerun with the same "
                        "DIR and export (default: a temp folder, removed)")
    args = parser.parse_args()
    os.environ.setdefault("COLUMNS", "200")
    quiet_libraries()
    export, data = args.export.resolve(), args.data.resolve()
    if not (export / "model.onnx").is_file() or not (export / "merged").is_dir():
        sys.exit(f"{export}: not an export stage folder (needs model.onnx and merged/)")
    target = args.target or host_target()
    work = args.work or Path(tempfile.mkdtemp(prefix="quant-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    load_before = [round(x, 2) for x in os.getloadavg()]
    max_length = export_length(export, data)
    variants = build_variants(export, data, work, target, args.keep_first, max_length)
    import csv

    with open(data / "test.csv", newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["text"].strip()]
    labels = json.loads((export / "labels.json").read_text())
    texts = [r["text"].strip() for r in rows]
    truth = np.array([labels.index(r["label"].strip()) for r in rows])
    measured = measure(variants, texts, truth, labels, args.threads, args.seconds, max_length)
    preset = load_target(target).quantization
    # The results name no folder of this machine: the export and data folders as `shown` writes them.
    data_shown = shown(data, outside="DATA")
    recipe_calibration = stage.calibration_texts(load_recipe(None, data_dir=data))[1].replace(str(data), data_shown)
    for model in measured["models"].values():
        model["note"] = model["note"].replace(str(data), data_shown)
    run = {
        "export": shown(export), "data": data_shown, "target": target,
        "preset": f"{preset.activation_type} activations, {preset.weight_type} weights, per_channel={preset.per_channel}, "
                  f"reduce_range={preset.reduce_range}",
        "calibration": f"128 texts from {recipe_calibration} (int8 static, int4 gptq)",
        "max_length": max_length, "test_examples": len(texts), "threads": args.threads, "seconds": args.seconds,
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "host": {k: v for k, v in runtime.describe_host(args.threads, "CPUExecutionProvider").items()
                 if k in ("cpu", "arch", "cores", "flags", "onnxruntime")}
                | {"load_before": load_before, "load_after": [round(x, 2) for x in os.getloadavg()]},
        **measured,
        "notes": args.note,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    store = RESULTS / "quantization.json"
    runs = json.loads(store.read_text()).get("runs", {}) if store.exists() else {}
    runs[args.label or data.name] = run
    store.write_text(json.dumps({"runs": runs}, indent=2) + "\n")
    (RESULTS / "quantization.md").write_text(render(runs))
    print((RESULTS / "quantization.md").read_text())
    if not args.work:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
