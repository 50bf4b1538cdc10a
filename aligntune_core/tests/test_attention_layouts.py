"""Shared and packed rows under each attention: the dense mask built on the device and the FlexAttention block mask
give the same log-probs and gradients as two padded rows per pair (ragged lengths, long prompts, single-token
replies, truncation). The flex path runs uncompiled on a CPU (torch's compiled CPU kernel is not what a GPU runs)."""

from __future__ import annotations

import pytest
import torch
from aligntune.modeling import collate_pairs, collate_shared, preference_logps
from aligntune.modeling.attention import allowed, block_mask, mask_mod_for

from conftest import assert_same_gradients, gradients


def _examples(seed: int = 0):
    """Ragged pairs: a long prompt, single-token replies, an empty-prompt-free mix of lengths."""
    g = torch.Generator().manual_seed(seed)

    def ids(n):
        return torch.randint(3, 300, (n,), generator=g).tolist()

    return [
        {"prompt_ids": ids(90), "chosen_ids": ids(1), "rejected_ids": ids(1)},  # long prompt, one-token replies
        {"prompt_ids": ids(7), "chosen_ids": ids(25), "rejected_ids": ids(3)},
        {"prompt_ids": ids(15), "chosen_ids": ids(4), "rejected_ids": ids(40)},
        {"prompt_ids": ids(1), "chosen_ids": ids(12), "rejected_ids": ids(12)},
    ]


def _model(attn_implementation: str, monkeypatch=None):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    torch.manual_seed(0)
    reference = LlamaForCausalLM(config)
    if attn_implementation == "sdpa":
        return reference
    model = LlamaForCausalLM._from_config(config, attn_implementation=attn_implementation)
    model.load_state_dict(reference.state_dict())
    return model


def _two_padded_rows(examples, max_length):
    """The reference: log-probs and gradients of two padded rows per pair under SDPA."""
    baseline = _model("sdpa")
    expected = preference_logps(baseline, collate_pairs(examples, pad_token_id=0, max_length=max_length)).logps
    expected.sum().backward()
    return expected.detach(), gradients(baseline)


def _assert_same_as_padded(model, batch, expected, expected_grad, *, backward: bool) -> None:
    """Log-probs equal the padded rows'; with `backward` the gradients too (torch has no FlexAttention backward on
    a CPU, so the flex path is checked forward only)."""
    if not backward:
        with torch.no_grad():
            assert torch.allclose(preference_logps(model, batch).logps, expected, atol=2e-5, rtol=0)
        return
    got = preference_logps(model, batch).logps
    assert torch.allclose(got, expected, atol=2e-5, rtol=0)
    got.sum().backward()
    assert_same_gradients(model, expected_grad)


@pytest.fixture
def uncompiled_flex(monkeypatch):
    """transformers compiles flex attention; on a CPU use torch's uncompiled implementation (the same math)."""
    import transformers.integrations.flex_attention as integration
    from torch.nn.attention.flex_attention import flex_attention

    monkeypatch.setattr(integration, "compile_friendly_flex_attention",
                        lambda query, key, value, training=False, **kwargs: flex_attention(query, key, value, **kwargs))


@pytest.mark.parametrize("pack", [False, True])
@pytest.mark.parametrize("max_length", [None, 48])
def test_block_mask_is_the_dense_rule(pack, max_length):
    from torch.nn.attention.flex_attention import create_mask

    batch = collate_shared(_examples(), pad_token_id=0, pack=pack, row_tokens=160, max_length=max_length)
    segment_ids, segment_kind = batch["segment_ids"], batch["segment_kind"]
    rows, length = segment_ids.shape
    materialised = create_mask(mask_mod_for(segment_ids, segment_kind), rows, 1, length, length, device="cpu")
    assert torch.equal(materialised[:, 0], allowed(segment_ids, segment_kind))
    dense = batch["attention_mask"][:, 0] == 0
    assert torch.equal(dense, allowed(segment_ids, segment_kind))  # the collator's mask is the same rule
    assert block_mask(segment_ids, segment_kind).shape == (rows, 1, length, length)


@pytest.mark.parametrize("attention", ["sdpa", "eager", "flex_attention"])
@pytest.mark.parametrize("pack", [False, True])
@pytest.mark.parametrize("max_length", [None, 48])
def test_shared_rows_equal_two_padded_rows_under_each_attention(attention, pack, max_length, uncompiled_flex):
    examples = _examples()
    expected, expected_grad = _two_padded_rows(examples, max_length)

    model = _model(attention)
    # No mask from the collator: it is built for the model's attention (dense, or a flex block mask).
    batch = collate_shared(examples, pad_token_id=0, pack=pack, row_tokens=160, max_length=max_length,
                           dense_mask=False)
    assert "attention_mask" not in batch
    _assert_same_as_padded(model, batch, expected, expected_grad, backward=attention != "flex_attention")


@pytest.mark.parametrize("attention", ["sdpa", "flex_attention", "position_ids"])
@pytest.mark.parametrize("max_length", [None, 48])
def test_packed_whole_sequences_equal_two_padded_rows(attention, max_length, uncompiled_flex):
    """Packing without prefix sharing: `[prompt | chosen] [prompt | rejected]` per pair, several pairs per row, under
    a dense mask, a flex block mask, or no mask at all (transformers finds the sequences from `position_ids`, the
    route variable-length flash attention takes on a GPU)."""
    examples = _examples()
    expected, expected_grad = _two_padded_rows(examples, max_length)

    model = _model("flex_attention" if attention == "flex_attention" else "sdpa")
    batch = collate_shared(examples, pad_token_id=0, pack=True, row_tokens=None, max_length=max_length,
                           dense_mask=False, share=False)
    assert batch["input_ids"].size(0) == 1  # one row: every pair of the batch
    if attention == "position_ids":
        batch = {k: v for k, v in batch.items() if k not in ("segment_ids", "segment_kind")}
    _assert_same_as_padded(model, batch, expected, expected_grad, backward=attention != "flex_attention")
