"""Per-sequence log-probabilities of completion tokens.

A batch holds `input_ids`, `attention_mask` and `completion_mask` (1 on completion tokens). The log-prob of a
sequence is the sum, over its completion tokens t, of log p(token_t | tokens_<t): the prompt is context only. Only
the positions that predict a completion token go through log-softmax, so the `(tokens, vocab)` float32 buffer is
as small as the completions, not the whole padded batch.
"""

from __future__ import annotations

import attrs
import torch


@attrs.frozen
class CompletionLogps:
    """Per-sequence results of one forward pass, shape `(batch,)` each."""

    logps: torch.Tensor  # summed completion log-probs (differentiable)
    lengths: torch.Tensor  # completion token counts
    mean_logits: torch.Tensor  # mean over completion tokens of the mean logit (a TRL metric), detached
    token_accuracy: torch.Tensor  # fraction of completion tokens that are the model's top-1 prediction, detached


def completion_logps(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    completion_mask: torch.Tensor,
    **forward_kwargs,
) -> CompletionLogps:
    """Run `model` once and sum each sequence's completion-token log-probs."""
    outputs = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **forward_kwargs)
    logits = outputs.logits
    # Prompt-learning adapters prepend virtual tokens: keep the positions of the real tokens.
    logits = logits[:, -input_ids.size(1) :]
    # Position t predicts token t+1.
    target_mask = completion_mask[:, 1:].bool()
    targets = input_ids[:, 1:][target_mask]
    rows = torch.nonzero(target_mask, as_tuple=True)[0]
    selected = logits[:, :-1][target_mask]  # (completion tokens, vocab)
    return score_tokens(selected, targets, rows, input_ids.size(0))


def score_tokens(selected: torch.Tensor, targets: torch.Tensor, rows: torch.Tensor, n: int) -> CompletionLogps:
    """Per-sequence sums from the logits of the positions that predict completion tokens.

    `selected[i]` are the logits predicting token `targets[i]` of sequence `rows[i]`; `n` sequences in all.
    Only these rows go through log-softmax, in float32.
    """
    selected = selected.float()
    token_logps = selected.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(selected, dim=-1)
    zeros = torch.zeros(n, dtype=selected.dtype, device=selected.device)
    logps = zeros.index_add(0, rows, token_logps)
    lengths = torch.bincount(rows, minlength=n)
    with torch.no_grad():
        denom = lengths.clamp(min=1).to(selected.dtype)
        mean_logits = zeros.index_add(0, rows, selected.mean(dim=-1)) / denom
        top1 = (selected.argmax(dim=-1) == targets).to(selected.dtype)
        token_accuracy = zeros.index_add(0, rows, top1) / denom
    return CompletionLogps(logps=logps, lengths=lengths, mean_logits=mean_logits, token_accuracy=token_accuracy)


def split_pairs(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a batch laid out as `[chosen rows..., rejected rows...]` into (chosen, rejected)."""
    if values.size(0) % 2:
        raise ValueError(f"a preference batch has an even number of rows (chosen then rejected), got {values.size(0)}")
    chosen, rejected = values.chunk(2, dim=0)
    return chosen, rejected
