"""Scoring preference pairs under the policy and the reference, tokenized exactly as training tokenizes them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from aligntune.eval.context import PairScores
from aligntune.eval.models import LoadedModels
from aligntune.modeling import collate_pairs, completion_logps, split_pairs, tokenize_pair


def tokenize_rows(tokenizer, rows: Sequence[dict[str, Any]], max_prompt_length: int | None) -> list[dict[str, list[int]]]:
    examples = []
    for row in rows:
        example = tokenize_pair(tokenizer, row)
        if max_prompt_length is not None:
            example["prompt_ids"] = example["prompt_ids"][-max_prompt_length:]
        examples.append(example)
    return examples


def _logps(model, batch) -> tuple[torch.Tensor, torch.Tensor]:
    chosen, rejected = split_pairs(completion_logps(model, **batch).logps)
    return chosen.double().cpu(), rejected.double().cpu()


def score_pairs(models: LoadedModels, rows: Sequence[dict[str, Any]], *, batch_size: int) -> list[PairScores]:
    plan = models.plan
    tokenizer = models.tokenizer
    examples = tokenize_rows(tokenizer, rows, plan.max_prompt_length)
    device = next(models.policy.parameters()).device
    scores: list[PairScores] = []
    with torch.no_grad():
        for start in tqdm(range(0, len(examples), batch_size), desc="Scoring pairs", unit="batch"):
            chunk = examples[start : start + batch_size]
            batch = collate_pairs(chunk, pad_token_id=tokenizer.pad_token_id, max_length=plan.max_seq_length)
            batch = {key: value.to(device) for key, value in batch.items()}
            policy_chosen, policy_rejected = _logps(models.policy, batch)
            if plan.reference_is_policy:
                ref_chosen, ref_rejected = policy_chosen, policy_rejected
            else:
                with models.reference_context():
                    ref_chosen, ref_rejected = _logps(models.reference_model, batch)
            for offset in range(len(chunk)):
                scores.append(
                    PairScores(
                        index=start + offset,
                        policy_chosen_logps=float(policy_chosen[offset]),
                        policy_rejected_logps=float(policy_rejected[offset]),
                        ref_chosen_logps=float(ref_chosen[offset]),
                        ref_rejected_logps=float(ref_rejected[offset]),
                        beta=plan.beta,
                    )
                )
    return scores
