"""A bundle in the shape bench ships (model.onnx, tokenizer, labels, preprocess.json), built in a second.

The model is a few onnx.helper nodes: embedding lookup, one token-wise feed-forward layer, masked mean pooling
and a linear head. Enough for the remote runner, emulation and roofline tests; no training, no torch.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

SMART_HOME = Path(__file__).resolve().parent.parent / "edgetune" / "recipes" / "smart_home"


def smart_home_texts(split: str = "test") -> tuple[list[str], list[str]]:
    with open(SMART_HOME / f"{split}.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def tiny_model(vocab: int, *, hidden: int = 64, ffn: int = 256, classes: int = 4, seed: int = 0):
    """An onnx ModelProto: (input_ids, attention_mask) [batch, seq] int64 -> logits [batch, classes] float32."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)

    def weight(name, *shape, scale=0.2):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    inits = [weight("emb", vocab, hidden, scale=1.0), weight("w1", hidden, ffn), weight("b1", ffn),
             weight("w2", ffn, hidden), weight("head", hidden, classes), weight("head_b", classes),
             numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
             numpy_helper.from_array(np.array([-1], dtype=np.int64), "axis_last")]
    nodes = [
        helper.make_node("Gather", ["emb", "input_ids"], ["x"]),
        helper.make_node("MatMul", ["x", "w1"], ["h1"]),
        helper.make_node("Add", ["h1", "b1"], ["h1b"]),
        helper.make_node("Relu", ["h1b"], ["h1r"]),
        helper.make_node("MatMul", ["h1r", "w2"], ["h2"]),
        helper.make_node("Add", ["x", "h2"], ["y"]),
        helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["m", "axis_last"], ["m3"]),
        helper.make_node("Mul", ["y", "m3"], ["ym"]),
        helper.make_node("ReduceSum", ["ym", "axis1"], ["s"], keepdims=0),
        helper.make_node("ReduceSum", ["m3", "axis1"], ["n"], keepdims=0),
        helper.make_node("Div", ["s", "n"], ["pooled"]),
        helper.make_node("MatMul", ["pooled", "head"], ["z"]),
        helper.make_node("Add", ["z", "head_b"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def make_bundle(folder: Path, *, hidden: int = 64, ffn: int = 256, quantize: bool = False, max_length: int = 32) -> Path:
    """Write a tiny bundle into `folder` (created); quantize=True ships it int8-dynamic like the default recipe."""
    import onnx
    from tokenizers import (
        Tokenizer,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    texts, labels = smart_home_texts("train")
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=300, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"]))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", tokenizer.token_to_id("[CLS]")), ("[SEP]", tokenizer.token_to_id("[SEP]"))])
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"pad_token": "[PAD]"}))
    (folder / "preprocess.json").write_text(json.dumps({"max_length": max_length, "pad_id": 0, "pad_token": "[PAD]"}))
    names = sorted(set(labels))
    (folder / "labels.json").write_text(json.dumps(names))
    model = tiny_model(tokenizer.get_vocab_size(), hidden=hidden, ffn=ffn, classes=len(names))
    path = folder / "model.onnx"
    onnx.save(model, str(path))
    if quantize:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        fp32 = folder / "model.fp32.onnx"
        path.rename(fp32)
        quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
        fp32.unlink()
    return folder
