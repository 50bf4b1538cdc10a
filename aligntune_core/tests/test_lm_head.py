"""The LM head on scored positions only (and in chunks): the same log-probs and gradients as scoring every
position's logits, on real tiny models of three architectures, in both batch layouts."""

from __future__ import annotations

import pytest
import torch
from aligntune.modeling import collate_pairs, collate_shared, preference_logps, tokenize_pair
from aligntune.modeling.lm_head import resolve_chunk_size

from conftest import assert_same_gradients, gradients

ROWS = [
    {"prompt": "Q: what is 2 plus 3? A:", "chosen": " 5", "rejected": " 6"},
    {"prompt": "Q: what is 10 plus 1? A:", "chosen": " 11 it is", "rejected": " 12"},
    {"prompt": "Q: what is 7 plus 0? A:", "chosen": " 7", "rejected": " 70 or so"},
]


def _reference(model, batch) -> torch.Tensor:
    """Float64 log-probs from the model's full logits (every position), picked afterwards: the independent path."""
    outputs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
    logits = outputs.logits.double()
    logps = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, batch["input_ids"][:, 1:].unsqueeze(-1)).squeeze(-1)
    return (logps * batch["completion_mask"][:, 1:]).sum(-1)


def _model(kind: str, tokenizer_len: int):
    from transformers import AutoModelForCausalLM, Gemma2Config, GraniteConfig, LlamaConfig

    common = dict(vocab_size=tokenizer_len, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    if kind == "llama":
        config = LlamaConfig(**common, tie_word_embeddings=False)
    elif kind == "gemma2":  # soft-capped logits
        config = Gemma2Config(**common, head_dim=8, final_logit_softcapping=3.0, attn_logit_softcapping=None,
                              query_pre_attn_scalar=8, sliding_window=64)
    else:  # granite: logits divided by logits_scaling
        config = GraniteConfig(**common, logits_scaling=4.0)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).float()
    with torch.no_grad():  # logits large enough that the soft cap and the scaling matter
        model.get_output_embeddings().weight.mul_(30)
    return model


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def _full_logits_answer(model, tokenizer):
    """The examples, their padded batch, and the full-logits float64 log-probs with the gradients they give."""
    examples = [tokenize_pair(tokenizer, row) for row in ROWS]
    padded = collate_pairs(examples, pad_token_id=tokenizer.pad_token_id or 0)
    expected = _reference(model, padded)
    expected.sum().backward()
    expected_grad = gradients(model)
    model.zero_grad()
    return examples, padded, expected, expected_grad


@pytest.mark.parametrize("kind", ["llama", "gemma2", "granite"])
@pytest.mark.parametrize("chunk_size", [None, 2, "auto"])
def test_scored_positions_give_the_full_logits_answer_and_gradients(kind, chunk_size, tokenizer):
    model = _model(kind, len(tokenizer))
    examples, padded, expected, expected_grad = _full_logits_answer(model, tokenizer)

    result = preference_logps(model, padded, chunk_size=chunk_size)
    assert result.head_layout == ("scored positions, chunks of 2" if chunk_size == 2 else "scored positions")
    assert torch.allclose(result.logps.double(), expected, atol=2e-5, rtol=0)
    result.logps.sum().backward()
    assert_same_gradients(model, expected_grad)  # float32 against a float64 log-softmax
    model.zero_grad()

    shared = collate_shared(examples, pad_token_id=tokenizer.pad_token_id or 0, pack=True, row_tokens=64)
    got = preference_logps(model, shared, chunk_size=chunk_size).logps
    assert torch.allclose(got.double(), expected, atol=2e-5, rtol=0)


def test_a_model_whose_logits_are_not_its_heads_output_is_noticed_and_scored_whole(tokenizer):
    """A post-processing step aligntune does not know (here: a forward that adds a constant bias to the logits)
    must not be skipped by the chunks: the per-batch check sees it and the head runs whole instead."""
    model = _model("llama", len(tokenizer))
    original = type(model).forward

    def forward(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        out.logits = out.logits + torch.arange(out.logits.size(-1), dtype=out.logits.dtype) * 0.01
        return out

    model.forward = forward.__get__(model)
    examples = [tokenize_pair(tokenizer, row) for row in ROWS]
    padded = collate_pairs(examples, pad_token_id=tokenizer.pad_token_id or 0)
    expected = _reference(model, padded)
    result = preference_logps(model, padded, chunk_size=2)
    assert result.head_layout.startswith("scored positions (chunks disabled")
    assert torch.allclose(result.logps.double(), expected, atol=2e-5, rtol=0)
    assert preference_logps(model, padded, chunk_size=2).head_layout == "scored positions"  # remembered


def test_auto_chunks_only_when_the_logits_would_be_large():
    assert resolve_chunk_size("auto", 1000, 32_000) is None  # 32M float32 values: one pass
    assert resolve_chunk_size("auto", 8192, 151_936) == 64 * 1024 * 1024 // 151_936
    assert resolve_chunk_size(None, 10**6, 10**6) is None and resolve_chunk_size(128, 10, 10) == 128


def test_chunks_over_a_32k_vocabulary_equal_the_whole_head(tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=32768, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    _, padded, expected, expected_grad = _full_logits_answer(model, tokenizer)
    result = preference_logps(model, padded, chunk_size=5)
    assert result.head_layout == "scored positions, chunks of 5"
    assert torch.allclose(result.logps.double(), expected, atol=2e-5, rtol=0)
    result.logps.sum().backward()
    assert_same_gradients(model, expected_grad)
