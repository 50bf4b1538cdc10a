"""LD-DPO (`ld_alpha`) and WPO weights (`use_weighting`) in the preference forward pass: the same numbers as an
independent float64 computation from the model's full logits, in every batch layout and with LM-head chunks; and
their place in the loss contract."""

from __future__ import annotations

import math

import pytest
import torch
from aligntune.losses import resolve_loss
from aligntune.modeling import collate_pairs, collate_shared, pair_weights, preference_logps, split_pairs, tokenize_pair
from aligntune.modeling.logps import token_ordinals

# Chosen longer than rejected, rejected longer, and equal: every case of the shared length.
ROWS = [
    {"prompt": "Q: what is 2 plus 3? A:", "chosen": " 5 because two and three make five", "rejected": " 6"},
    {"prompt": "Q: what is 10 plus 1? A:", "chosen": " 11", "rejected": " 12 or maybe thirteen, hard to say"},
    {"prompt": "Q: what is 7 plus 0? A:", "chosen": " 7", "rejected": " 8"},
]


@pytest.fixture(scope="module")
def model_and_examples(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation="eager").float().eval()
    return model, tokenizer, [tokenize_pair(tokenizer, row) for row in ROWS]


def _independent(model, padded, ld_alpha: float):
    """Per sequence, from full float64 log-softmaxes: the LD sum (tokens past the pair's shared length x ld_alpha)
    and WPO's mean of log p − log Σ p², written out token by token."""
    with torch.no_grad():
        logits = model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"]).logits.double()
    logp_all = torch.log_softmax(logits[:, :-1], dim=-1)
    targets = padded["input_ids"][:, 1:]
    mask = padded["completion_mask"][:, 1:].bool()
    rows = padded["input_ids"].size(0)
    per_row = []
    for row in range(rows):
        positions = mask[row].nonzero().flatten().tolist()
        token_logps = [logp_all[row, t, targets[row, t]].item() for t in positions]
        sum_sq = [torch.logsumexp(2 * logp_all[row, t], dim=-1).item() for t in positions]  # log Σ p²
        per_row.append((token_logps, sum_sq))
    n = rows // 2
    ld, plain, wpo = [], [], []
    for row, (token_logps, sum_sq) in enumerate(per_row):
        shared = min(len(per_row[row % n][0]), len(per_row[row % n + n][0]))
        ld.append(sum(v if k < shared else ld_alpha * v for k, v in enumerate(token_logps)))
        plain.append(sum(token_logps))
        wpo.append(sum(a - b for a, b in zip(token_logps, sum_sq)) / len(token_logps))
    return tuple(torch.tensor(values, dtype=torch.float64) for values in (ld, plain, wpo))


@pytest.mark.parametrize("layout", ["padded", "shared", "packed", "packed sequences"])
@pytest.mark.parametrize("chunk_size", [None, 3])
def test_ld_sums_and_wpo_weights_match_an_independent_computation(model_and_examples, layout, chunk_size):
    model, tokenizer, examples = model_and_examples
    padded = collate_pairs(examples, pad_token_id=tokenizer.pad_token_id or 0)
    ld, plain, wpo = _independent(model, padded, ld_alpha=0.25)
    assert not torch.allclose(ld, plain, atol=1e-3)  # the data has tokens past the shared length: LD changes sums
    batch = padded if layout == "padded" else collate_shared(
        examples, pad_token_id=tokenizer.pad_token_id or 0, pack=layout != "shared", row_tokens=64,
        share=layout != "packed sequences")
    result = preference_logps(model, batch, chunk_size=chunk_size, ld_alpha=0.25, wpo=True)
    assert result.head_layout.startswith("scored positions")
    assert torch.allclose(result.logps.double(), ld, atol=2e-5, rtol=0)
    assert torch.allclose(result.plain_logps.double(), plain, atol=2e-5, rtol=0)
    assert torch.allclose(result.wpo_log_weights.double(), wpo, atol=2e-5, rtol=0)
    chosen, rejected = split_pairs(torch.exp(wpo))
    assert torch.allclose(pair_weights(result).double(), chosen * rejected, rtol=1e-5, atol=0)
    assert not result.wpo_log_weights.requires_grad  # WPO weights are constants of the step


def test_without_the_options_nothing_extra_is_computed(model_and_examples):
    model, tokenizer, examples = model_and_examples
    result = preference_logps(model, collate_pairs(examples, pad_token_id=0))
    assert result.plain_logps is None and result.wpo_log_weights is None
    with pytest.raises(ValueError, match="wpo=True"):
        pair_weights(result)


def test_ld_alpha_one_is_the_plain_sum_and_gradients_flow_through_both_parts(model_and_examples):
    model, tokenizer, examples = model_and_examples
    batch = collate_pairs(examples, pad_token_id=0)
    assert torch.allclose(preference_logps(model, batch, ld_alpha=1.0).logps, preference_logps(model, batch).logps,
                          atol=1e-6)
    result = preference_logps(model, batch, ld_alpha=0.5)
    result.logps.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.zero_grad()


def test_token_ordinals_count_within_each_sequence_in_order():
    rows = torch.tensor([2, 0, 0, 2, 1, 0, 2])
    assert token_ordinals(rows, 3).tolist() == [0, 0, 1, 1, 0, 2, 2]


def test_pair_weights_multiply_every_losss_per_pair_values_and_sft_reads_the_plain_sums():
    loss = resolve_loss(["sigmoid", "sft"], beta=0.1, weights=[1.0, 0.5])
    chosen, rejected = torch.tensor([-4.0, -9.0]), torch.tensor([-6.0, -3.0])
    ref_chosen, ref_rejected = torch.tensor([-5.0, -8.0]), torch.tensor([-5.0, -4.0])
    lengths = torch.tensor([2, 3])
    common = dict(policy_chosen_logps=chosen, policy_rejected_logps=rejected, ref_chosen_logps=ref_chosen,
                  ref_rejected_logps=ref_rejected, chosen_lengths=lengths, rejected_lengths=lengths)
    plain = loss.compute(**common)
    weights = torch.tensor([0.5, 2.0])
    weighted = loss.compute(**common, pair_weights=weights)
    for name in ("sigmoid", "sft"):
        assert torch.allclose(weighted.components[name], plain.components[name] * weights)
    assert torch.allclose(weighted.losses, plain.losses * weights)
    # sft is a likelihood: with ld_alpha it reads the plain sums, and only it does.
    full = torch.tensor([-7.0, -12.0])
    with_plain = loss.compute(**common, policy_chosen_plain_logps=full)
    assert with_plain.components["sft"][0].item() == pytest.approx(19.0 / 5.0)
    assert torch.equal(with_plain.components["sigmoid"], plain.components["sigmoid"])
    expected_sigmoid = -math.log(1 / (1 + math.exp(-0.1 * ((-4.0 + 5.0) - (-6.0 + 5.0)))))
    assert plain.components["sigmoid"][0].item() == pytest.approx(expected_sigmoid, rel=1e-6)
