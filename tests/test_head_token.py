"""edgetune.head_token: the last feed-forward block on the classifier's token gives the model's own logits."""

from __future__ import annotations

import pytest
import torch
from transformers import (BertConfig, BertForSequenceClassification, DistilBertConfig,
                          DistilBertForSequenceClassification, RobertaConfig, RobertaForSequenceClassification)

from edgetune.head_token import first_token_last_layer, unsupported

SIZES = dict(vocab_size=100, hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
             num_labels=5, max_position_embeddings=70)


def padded_batch():
    torch.manual_seed(1)
    ids = torch.randint(5, 100, (4, 12))
    mask = torch.ones_like(ids)
    mask[1, 7:], mask[2, 3:] = 0, 0  # padding changes what the first token attends to
    return ids, mask


@pytest.mark.parametrize("model_class, config_class", [(BertForSequenceClassification, BertConfig),
                                                       (RobertaForSequenceClassification, RobertaConfig)])
@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_rewritten_model_gives_the_same_logits_on_padded_batches(model_class, config_class, attention):
    torch.manual_seed(0)
    model = model_class(config_class(**SIZES)).eval()
    model.set_attn_implementation(attention)
    assert unsupported(model) is None
    ids, mask = padded_batch()
    with torch.no_grad():
        want = model(input_ids=ids, attention_mask=mask).logits
        got = first_token_last_layer(model)(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


def test_the_last_feed_forward_block_sees_one_position_and_the_original_is_untouched():
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(**SIZES)).eval()
    rewritten = first_token_last_layer(model)
    seen = {}
    for name, m in (("rewritten", rewritten), ("original", model)):
        last = m.bert.encoder.layer[-1]
        block = last.layer if name == "rewritten" else last
        block.intermediate.dense.register_forward_hook(lambda mod, args, out, name=name: seen.update({name: args[0].shape}))
    ids, mask = padded_batch()
    with torch.no_grad():
        rewritten(input_ids=ids, attention_mask=mask)
        model(input_ids=ids, attention_mask=mask)
    assert seen == {"rewritten": (4, 1, 32), "original": (4, 12, 32)}


def test_models_whose_head_reads_more_than_the_first_token_are_left_alone():
    distil = DistilBertForSequenceClassification(DistilBertConfig(vocab_size=100, dim=32, n_layers=2, n_heads=2,
                                                                  hidden_dim=64))
    assert "DistilBertForSequenceClassification" in unsupported(distil)
    decoder = BertForSequenceClassification(BertConfig(**SIZES, is_decoder=True))
    assert "decoder" in unsupported(decoder)
