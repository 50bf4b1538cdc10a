"""Prefix-shared and packed log-probs equal the plain two-sequence computation, and so do their gradients."""

from __future__ import annotations

import random

import pytest
import torch
from transformers import AutoModelForCausalLM

from aligntune.modeling import collate_pairs, collate_shared, completion_logps, preference_logps


def _example(rng, prompt, chosen, rejected, vocab):
    def ids(n):
        return [rng.randrange(4, vocab) for _ in range(n)]

    return {"prompt_ids": ids(prompt), "chosen_ids": ids(chosen), "rejected_ids": ids(rejected)}


@pytest.fixture(scope="module", params=["sdpa", "eager"])
def model(tiny_model, request):
    return AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32,
                                                attn_implementation=request.param).eval()


CASES = {
    "ragged": [(10, 3, 7), (2, 1, 1), (25, 12, 2), (5, 1, 9)],
    "long prompts": [(120, 4, 6), (90, 2, 3)],
    "single-token replies": [(7, 1, 1), (3, 1, 1), (12, 1, 1)],
    "prompt of one token": [(1, 20, 20), (1, 3, 1)],
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("max_length", [None, 24])
@pytest.mark.parametrize("pack", [False, True])
def test_shared_logps_equal_the_two_sequence_computation(model, case, max_length, pack):
    rng = random.Random(hash(case) % 1000)
    vocab = model.config.vocab_size
    examples = [_example(rng, *sizes, vocab) for sizes in CASES[case]]
    with torch.no_grad():
        plain = completion_logps(model, **collate_pairs(examples, pad_token_id=0, max_length=max_length))
        shared_batch = collate_shared(examples, pad_token_id=0, max_length=max_length, pack=pack, row_tokens=64)
        shared = preference_logps(model, shared_batch)
    assert shared.logps.tolist() == pytest.approx(plain.logps.tolist(), abs=2e-5)
    assert shared.lengths.tolist() == plain.lengths.tolist()
    assert shared.token_accuracy.tolist() == pytest.approx(plain.token_accuracy.tolist(), abs=1e-6)
    # Fewer positions go through the model: each prompt once, and (packed) less padding.
    assert shared_batch["input_ids"].numel() <= collate_pairs(examples, pad_token_id=0)["input_ids"].numel()
    if pack and case in ("ragged", "single-token replies"):
        assert shared_batch["input_ids"].size(0) < len(examples)  # short segments share rows


def test_truncation_keeps_the_start_like_training(model):
    rng = random.Random(3)
    examples = [_example(rng, 20, 10, 15, model.config.vocab_size)]
    batch = collate_shared(examples, pad_token_id=0, max_length=22)
    # 20 prompt tokens leave room for 2 tokens of each response.
    assert batch["input_ids"].shape == (1, 24)
    assert batch["chosen_targets"].tolist() == examples[0]["chosen_ids"][:2]
    assert batch["rejected_targets"].tolist() == examples[0]["rejected_ids"][:2]


def test_gradients_equal_the_two_sequence_computation(tiny_model):
    rng = random.Random(5)
    plain_model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    shared_model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    examples = [_example(rng, *sizes, plain_model.config.vocab_size) for sizes in [(9, 4, 2), (3, 6, 5), (15, 1, 3)]]
    weights = torch.tensor([0.3, -1.0, 0.7, 2.0, -0.4, 0.1])
    (completion_logps(plain_model, **collate_pairs(examples, pad_token_id=0)).logps * weights).sum().backward()
    batch = collate_shared(examples, pad_token_id=0, pack=True)
    (preference_logps(shared_model, batch).logps * weights).sum().backward()
    shared_grads = dict(shared_model.named_parameters())
    for name, parameter in plain_model.named_parameters():
        assert torch.allclose(parameter.grad, shared_grads[name].grad, atol=1e-5, rtol=1e-4), name


def test_rejected_tokens_cannot_see_the_chosen_ones(model):
    rng = random.Random(9)
    example = _example(rng, 6, 5, 4, model.config.vocab_size)
    changed = dict(example, chosen_ids=[t + 1 if t + 1 < model.config.vocab_size else 4 for t in example["chosen_ids"]])
    with torch.no_grad():
        a = preference_logps(model, collate_shared([example], pad_token_id=0)).logps
        b = preference_logps(model, collate_shared([changed], pad_token_id=0)).logps
    assert a[1].item() == pytest.approx(b[1].item(), abs=1e-6)  # the rejected side ignores the chosen tokens
    assert a[0].item() != pytest.approx(b[0].item(), abs=1e-3)
