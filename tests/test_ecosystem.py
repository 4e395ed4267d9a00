"""The bundle in the Hugging Face ecosystem: config.json, the model card, the PyTorch student, and optimum.

optimum-onnx requires transformers < 4.58 and edgetune runs 5.x, so optimum's checks run in a side environment
made from tests/optimum-requirements.txt, named by EDGETUNE_OPTIMUM_VENV (.ci/run makes it); they skip, saying
so, where it is absent.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import pytest

from edgetune import bundle_predict
from helpers import SMART_HOME

OPTIMUM_VENV = os.environ.get("EDGETUNE_OPTIMUM_VENV")

# Runs in the side environment: the bundle through optimum's ORTModel and a transformers pipeline.
OPTIMUM_SCRIPT = """
import json, sys
from optimum.onnxruntime import ORTModelForSequenceClassification
from transformers import AutoTokenizer, pipeline

bundle, texts = sys.argv[1], json.load(sys.stdin)
model = ORTModelForSequenceClassification.from_pretrained(bundle)
tokenizer = AutoTokenizer.from_pretrained(bundle)
labels = []
for i in range(0, len(texts), 32):
    batch = tokenizer(texts[i:i + 32], padding=True, truncation=True, return_tensors="np")
    logits = model(**batch).logits
    labels += [model.config.id2label[int(row.argmax())] for row in logits]
classify = pipeline("text-classification", model=model, tokenizer=tokenizer)
# Batches of 32 as predict.py runs them: int8 dynamic quantization scales each activation by its batch's range,
# so another batching can flip a near-tie.
piped = [answer["label"] for answer in classify(texts, truncation=True, batch_size=32)]
print(json.dumps({"ort_model": labels, "pipeline": piped}))
"""


def smart_home_test_texts() -> list[str]:
    with open(SMART_HOME / "test.csv", newline="", encoding="utf-8") as handle:
        return [row["text"] for row in csv.DictReader(handle)]


@pytest.fixture(scope="module")
def bundle(base_build) -> Path:
    return base_build.out / "rpi5" / "bundle"


def test_config_json_carries_the_bundle_label_map(bundle):
    labels = json.loads((bundle / "labels.json").read_text())
    config = json.loads((bundle / "config.json").read_text())
    assert config["id2label"] == {str(i): name for i, name in enumerate(labels)}
    assert config["label2id"] == {name: i for i, name in enumerate(labels)}
    assert config["model_type"] == "bert"
    preprocess = json.loads((bundle / "preprocess.json").read_text())
    assert json.loads((bundle / "tokenizer_config.json").read_text())["model_max_length"] == preprocess["max_length"]


def test_transformers_reads_the_bundle_config_and_tokenizer(bundle):
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(bundle)
    assert config.num_labels == len(json.loads((bundle / "labels.json").read_text()))
    tokenizer = AutoTokenizer.from_pretrained(bundle)
    from tokenizers import Tokenizer

    text = "turn off the kitchen lights"
    assert tokenizer(text)["input_ids"] == Tokenizer.from_file(str(bundle / "tokenizer.json")).encode(text).ids


def test_model_card_names_task_labels_data_metrics_and_limits(bundle, base_build):
    card = (bundle / "README.md").read_text()
    report = json.loads((base_build.out / "rpi5" / "report.json").read_text())
    labels = json.loads((bundle / "labels.json").read_text())
    assert "pipeline_tag: text-classification" in card
    assert all(f"`{name}`" in card for name in labels)
    assert report["test_set_sha256"] in card
    assert f"{report['accuracy']:.4f}" in card and "Wilson" in card
    assert f"{report['latency_ms']['p95_ci'][0]:.2f}" in card
    assert "## Limits" in card and "## How it was built" in card
    assert report["bundle_bytes"] == sum(p.stat().st_size for p in bundle.iterdir() if p.name != "manifest.json")


def test_merged_pytorch_student_is_the_model_the_bundle_was_quantized_from(bundle, base_build):
    """pytorch_student gives the logits of the export stage's fp32 graph, which the shipped int8 model was made from.
    (Compared with the int8 bundle itself, a tiny model's near-ties flip with the host's int8 kernels.)"""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from edgetune import runtime
    from edgetune.pipeline import cache_dir

    folder = base_build.out / "rpi5" / "pytorch_student"
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    settings = json.loads((bundle / "preprocess.json").read_text())
    texts = smart_home_test_texts()[:16]
    with torch.no_grad():
        logits = model(**tokenizer(texts, padding=True, truncation=True, max_length=settings["max_length"],
                                   return_tensors="pt")).logits.numpy()
    export_key = json.loads((bundle / "manifest.json").read_text())["material"]["upstream"]["export"]
    fp32_graph = cache_dir(base_build.out, "export", export_key) / "model.onnx"
    onnx_logits = runtime.logits(texts, runtime.load_tokenizer(bundle), runtime.open_session(fp32_graph))
    assert abs(logits - onnx_logits).max() <= 1e-4  # export.atol: the bound the export stage itself enforced
    assert model.config.id2label == {i: name for i, name in enumerate(json.loads((bundle / "labels.json").read_text()))}


@pytest.mark.skipif(not OPTIMUM_VENV, reason="EDGETUNE_OPTIMUM_VENV is not set: no side environment with optimum-onnxruntime "
                    "(make one: python3 -m venv V && V/bin/pip install -r tests/optimum-requirements.txt)")
def test_optimum_ort_model_and_pipeline_give_predict_labels_on_the_test_split(bundle):
    texts = smart_home_test_texts()
    tokenizer, session, labels = bundle_predict.load(bundle)
    expected = [label for label, _ in bundle_predict.predict(texts, tokenizer, session, labels)]
    result = subprocess.run([str(Path(OPTIMUM_VENV) / "bin" / "python"), "-c", OPTIMUM_SCRIPT, str(bundle)],
                            input=json.dumps(texts), capture_output=True, text=True, timeout=600,
                            env=os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    assert answers["ort_model"] == expected
    assert answers["pipeline"] == expected
