"""An exact rewrite for export: the last layer's feed-forward block runs on the token the classifier reads.

A BERT-style sequence classifier reads one position of its last layer, the first ([CLS], `<s>`): BERT's pooler and
RoBERTa's head both take hidden[:, 0]. The last layer's feed-forward block (two thirds of a layer's weights) is
computed for every position and all but the first are thrown away. Here it runs on the first position alone: the
same logits, (n - 1) / n of that block saved on an n-token input. Exporters and onnxruntime's optimizer keep the work
(the graph declares the whole sequence as the layer's output). The attention block stays whole, so onnxruntime
still fuses it into one Attention op: cutting its queries and output projection to the first token too breaks that
fusion, and the unfused attention cost more than the cut saved.
"""

from __future__ import annotations

import copy

import torch

# Classifiers whose head reads only position 0 of an encoder built of BertLayer-shaped layers
# (`attention` returning (output, weights), then `feed_forward_chunk`).
FIRST_TOKEN_HEADS = ("BertForSequenceClassification", "RobertaForSequenceClassification",
                     "XLMRobertaForSequenceClassification")


def unsupported(model) -> str | None:
    """Why the rewrite does not apply to this model, or None when it does."""
    name = type(model).__name__
    if name not in FIRST_TOKEN_HEADS:
        return f"{name}: its head is not one known to read the first token only"
    if model.config.is_decoder or getattr(model.config, "add_cross_attention", False):
        return f"{name}: a decoder or cross-attention layer"
    return None


def first_token_last_layer(model):
    """A copy of `model` whose last encoder layer returns the first position only (shape [batch, 1, hidden])."""
    model = copy.deepcopy(model)
    layers = model.base_model.encoder.layer
    layers[-1] = FirstTokenFeedForward(layers[-1])
    return model


class FirstTokenFeedForward(torch.nn.Module):
    """Wraps a BertLayer-shaped layer; called with what the encoder passes the layer it replaces."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, hidden_states, attention_mask=None, *args, **kwargs):
        attended, _ = self.layer.attention(hidden_states, attention_mask)
        return self.layer.feed_forward_chunk(attended[:, :1])
