"""Scoring preference pairs under the policy and the reference, tokenized exactly as training tokenizes them.

Log-probs come from training's own `completion_logps`. The policy's next-token entropy over the same completion
tokens is computed from the logits of that same forward pass (no second pass).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import torch
from tqdm.auto import tqdm

from aligntune.eval.context import PairScores
from aligntune.eval.models import LoadedModels
from aligntune.modeling import collate_pairs, completion_logps, split_pairs, tokenize_pair

# Completion tokens per softmax chunk when computing entropies: bounds the (tokens, vocab) float32 buffers.
ENTROPY_CHUNK = 1024


def tokenize_rows(tokenizer, rows: Sequence[dict[str, Any]], max_prompt_length: int | None,
                  max_completion_length: int | None = None) -> list[dict[str, list[int]]]:
    """Each pair tokenized and cut as training cuts it: the prompt's end, the completions' start."""
    examples = []
    for row in rows:
        example = tokenize_pair(tokenizer, row)
        if max_prompt_length is not None:
            example["prompt_ids"] = example["prompt_ids"][-max_prompt_length:]
        if max_completion_length is not None:
            for column in ("chosen_ids", "rejected_ids"):
                example[column] = example[column][:max_completion_length]
        examples.append(example)
    return examples


class _KeepLogits:
    """Calls the model and keeps the output logits, so that one forward pass gives log-probs and entropies."""

    def __init__(self, model) -> None:
        self.model = model
        self.logits: torch.Tensor | None = None

    def __call__(self, **kwargs):
        outputs = self.model(**kwargs)
        self.logits = outputs.logits
        return outputs


@attrs.frozen
class SideScores:
    """Per-row results of one forward pass over a `[chosen..., rejected...]` batch, as float64 on the CPU."""

    logps: torch.Tensor
    entropy: torch.Tensor | None  # summed over each row's scored completion tokens
    tokens: torch.Tensor  # scored completion tokens per row


def completion_entropy(logits: torch.Tensor, input_ids: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """Per row, the sum over the positions that predict a completion token of H = −Σ_v p_v log p_v (nats), where
    p is the model's next-token distribution there: the same positions `completion_logps` scores."""
    logits = logits[:, -input_ids.size(1):]  # as completion_logps: drop prompt-learning virtual tokens
    rows, cols = torch.nonzero(completion_mask[:, 1:].bool(), as_tuple=True)  # position t predicts token t+1
    sums = torch.zeros(input_ids.size(0), dtype=torch.float32, device=logits.device)
    for start in range(0, rows.numel(), ENTROPY_CHUNK):
        r, c = rows[start : start + ENTROPY_CHUNK], cols[start : start + ENTROPY_CHUNK]
        logp = torch.log_softmax(logits[r, c].float(), dim=-1)
        p = logp.exp()
        entropy = -(p * torch.where(p > 0, logp, torch.zeros_like(logp))).sum(dim=-1)
        sums.index_add_(0, r, entropy)
    return sums


def _score(model, batch, *, entropy: bool) -> SideScores:
    recorder = _KeepLogits(model)
    result = completion_logps(recorder, **batch)
    sums = None
    if entropy:
        sums = completion_entropy(recorder.logits, batch["input_ids"], batch["completion_mask"]).double().cpu()
    recorder.logits = None
    return SideScores(logps=result.logps.double().cpu(), entropy=sums, tokens=result.lengths.cpu())


def score_pairs(models: LoadedModels, rows: Sequence[dict[str, Any]], *, batch_size: int) -> list[PairScores]:
    plan = models.plan
    tokenizer = models.tokenizer
    examples = tokenize_rows(tokenizer, rows, plan.max_prompt_length, plan.max_completion_length)
    device = next(models.policy.parameters()).device
    scores: list[PairScores] = []
    with torch.no_grad():
        for start in tqdm(range(0, len(examples), batch_size), desc="Scoring pairs", unit="batch"):
            chunk = examples[start : start + batch_size]
            batch = collate_pairs(chunk, pad_token_id=tokenizer.pad_token_id, max_length=plan.max_seq_length)
            batch = {key: value.to(device) for key, value in batch.items()}
            policy = _score(models.policy, batch, entropy=True)
            if plan.reference_is_policy:
                reference = policy
            else:
                with models.reference_context():
                    reference = _score(models.reference_model, batch, entropy=False)
            policy_chosen, policy_rejected = split_pairs(policy.logps)
            ref_chosen, ref_rejected = split_pairs(reference.logps)
            entropy_chosen, entropy_rejected = split_pairs(policy.entropy)
            tokens_chosen, tokens_rejected = split_pairs(policy.tokens)
            for offset in range(len(chunk)):
                scores.append(
                    PairScores(
                        index=start + offset,
                        policy_chosen_logps=float(policy_chosen[offset]),
                        policy_rejected_logps=float(policy_rejected[offset]),
                        ref_chosen_logps=float(ref_chosen[offset]),
                        ref_rejected_logps=float(ref_rejected[offset]),
                        beta=plan.beta,
                        policy_chosen_entropy=float(entropy_chosen[offset]),
                        policy_rejected_entropy=float(entropy_rejected[offset]),
                        chosen_tokens=int(tokens_chosen[offset]),
                        rejected_tokens=int(tokens_rejected[offset]),
                    )
                )
    return scores
