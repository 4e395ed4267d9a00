"""What neural-compressor's living API (3.x, PyTorch) does for an edgetune student, beside the bundle edgetune ships.

    python3 -m venv V && V/bin/pip install -r benchmarks/inc/requirements.txt
    V/bin/python benchmarks/inc/run.py edgetune-out/rpi5 --test edgetune/recipes/smart_home/test.csv

BUILD is a finished build folder (DIR/<target>): its pytorch_student/ (the merged fp32 student) is quantized with
INC 3.x's PyTorch API (RTN weight-only int8 and PT2E dynamic int8), each result is tried through torch.onnx.export
(what edgetune would need to ship it), and all of them are timed interleaved with the bundle's ONNX model (its own
edgetune_runtime.py, one intra-op thread everywhere, batch 1, the test split's real texts) and scored on that split.
Writes benchmarks/results/inc.json and inc.md.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parents[1] / "results"


def read_split(path: Path) -> tuple[list[str], list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def inc_variants(student, example: dict) -> tuple[dict, dict]:
    """name -> quantized torch model, and name -> why a variant could not be made."""
    from neural_compressor.torch.quantization import DynamicQuantConfig, RTNConfig, convert, prepare

    made, failed = {}, {}
    try:
        model = prepare(copy.deepcopy(student), RTNConfig(bits=8, group_size=-1, use_sym=True))
        made["INC RTN int8 weight-only"] = convert(model)
    except Exception as err:  # a failure is a result here: record the line the library raised
        failed["INC RTN int8 weight-only"] = f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"
    try:
        from neural_compressor.torch.export import export

        seq = torch.export.Dim("seq", min=2, max=512)  # batch 1, the shape timed here
        inputs = tuple(torch.from_numpy(v) for v in example.values())
        exported = export(_Positional(copy.deepcopy(student), list(example)), inputs,
                          {name: {1: seq} for name in example})
        model = prepare(exported, DynamicQuantConfig())
        model(*inputs)
        made["INC PT2E dynamic int8"] = _Keywords(convert(model), list(example))
    except Exception as err:
        failed["INC PT2E dynamic int8"] = f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"
    return made, failed


class _Positional(torch.nn.Module):
    """The HF model with positional inputs and a plain logits output, as torch.export wants it."""

    def __init__(self, model, names):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, input_ids, attention_mask, token_type_ids=None):  # named: torch.export maps shapes by name
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        return self.model(**{n: given[n] for n in self.names}).logits


class _Keywords:
    def __init__(self, module, names):
        self.module, self.names = module, names

    def __call__(self, **feed):
        return self.module(*(feed[n] for n in self.names))  # logits


def logits_of(model, feed: dict) -> np.ndarray:
    with torch.no_grad():
        out = model(**{k: torch.from_numpy(v) for k, v in feed.items()})
    return (out.logits if hasattr(out, "logits") else out).numpy()


def onnx_export_check(model, example: dict, work: Path) -> str:
    """Whether torch.onnx.export turns the quantized model into an ONNX graph, and what it holds."""
    import onnx

    path = work / "model.onnx"
    try:
        module = model.module if isinstance(model, _Keywords) else _Positional(model, list(example))
        torch.onnx.export(module, tuple(torch.from_numpy(v) for v in example.values()), str(path),
                          input_names=list(example), output_names=["logits"], opset_version=17, dynamo=False)
    except Exception as err:
        return f"export failed: {type(err).__name__}: {str(err).splitlines()[0][:200]}"
    ops = sorted({n.op_type for n in onnx.load(str(path)).graph.node})
    quantized = [op for op in ops if "Quant" in op or "Integer" in op or op == "MatMulNBits"]
    return f"exported; quantized ops: {', '.join(quantized) or 'none (weights dequantized to float)'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build", type=Path)
    parser.add_argument("--test", type=Path, required=True)
    parser.add_argument("--max-seconds", type=float, default=60)
    parser.add_argument("--min-runs", type=int, default=100, help="timed runs per model at least")
    parser.add_argument("--no-onnx-export", action="store_true",
                        help="skip trying torch.onnx.export on INC's models (it ran past 20 min on a loaded 2-core host)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    bundle = args.build / "bundle"
    sys.path.insert(0, str(bundle))
    import edgetune_runtime as runtime  # the bundle's own runtime: tokenizing, sessions, timing
    from transformers import AutoModelForSequenceClassification

    texts, truth = read_split(args.test)
    labels = json.loads((bundle / "labels.json").read_text())
    tokenizer = runtime.load_tokenizer(bundle)
    session = runtime.open_session(bundle / "model.onnx", 1)
    student = AutoModelForSequenceClassification.from_pretrained(args.build / "pytorch_student").eval()
    feeds = runtime.latency_feeds(texts, tokenizer, session, 1, seed=0)
    example = {k: v for k, v in feeds[0].items()}
    made, failed = inc_variants(student, example)
    models = {"edgetune bundle (ORT, fused int8 dynamic)": lambda feed: session.run(None, feed)[0],
              "torch fp32 student": lambda feed: logits_of(student, feed)}
    models |= {name: (lambda feed, m=m: logits_of(m, feed)) for name, m in made.items()}
    exports = {}
    if not args.no_onnx_export:
        with tempfile.TemporaryDirectory() as work:
            exports = {name: onnx_export_check(m, example, Path(work)) for name, m in made.items()}
    truth_ids = np.array([labels.index(t) for t in truth])
    accuracy = {name: float(np.mean(np.array([run(f).argmax(-1)[0] for f in feeds_all(texts, tokenizer, session, runtime)])
                                     == truth_ids)) for name, run in models.items()}
    rule = runtime.StopRule(warmup_runs=5, min_runs=args.min_runs, max_runs=3000, max_seconds=args.max_seconds)
    runners = {name: runtime.Runner(run, feeds) for name, run in models.items()}
    timing = {name: lat.summary() for name, lat in runtime.measure(runners, rule, block=20, rewarm=2).items()}
    write(args, models, accuracy, timing, exports, failed, runtime)


def feeds_all(texts, tokenizer, session, runtime):
    """Every test text as a batch of one, in order (scoring)."""
    return [runtime.encode([t], tokenizer, session) for t in texts]


def write(args, models, accuracy, timing, exports, failed, runtime) -> None:
    from importlib.metadata import version

    import onnxruntime

    meta = {"measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "target": args.build.name,
            "test": args.test.name, "texts": len(read_split(args.test)[0]),
            "cpu": f"{runtime.cpu_model_and_flags()[0]} ({platform.machine()})", "load_average": os.getloadavg(),
            "neural_compressor": version("neural-compressor-pt"), "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__, "threads": 1}
    rows = {name: {"accuracy": accuracy[name], **{k: timing[name][k] for k in ("p50", "p95", "p95_ci", "runs")},
                   "onnx_export": exports.get(name)} for name in models}
    (RESULTS / "inc.json").write_text(json.dumps({"meta": meta, "rows": rows, "failed": failed}, indent=2) + "\n")
    lines = ["# neural-compressor 3.x on an edgetune student", "",
             "Made by `benchmarks/inc/run.py` (see its docstring); do not edit by hand. " + json.dumps(meta), "",
             "| model | accuracy | p50 ms | p95 ms (95% CI) | torch.onnx.export |", "|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['accuracy']:.4f} | {r['p50']:.2f} | {r['p95']:.2f} ({r['p95_ci'][0]:.2f}–"
                     f"{r['p95_ci'][1]:.2f}) | {r['onnx_export'] or '-'} |")
    lines += [""] + [f"- could not make {name}: `{why}`" for name, why in failed.items()]
    (RESULTS / "inc.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
