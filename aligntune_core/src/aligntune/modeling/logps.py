"""Per-sequence log-probabilities of completion tokens.

A batch holds `input_ids`, `attention_mask` and `completion_mask` (1 on completion tokens). The log-prob of a
sequence is the sum, over its completion tokens t, of log p(token_t | tokens_<t): the prompt is context only. Only
the positions that predict a completion token go through the LM head and log-softmax, so the `(tokens, vocab)`
buffers are as small as the completions, not the whole padded batch (see `aligntune.modeling.lm_head`).
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
    head_layout: str = ""  # how the LM head ran (aligntune.modeling.lm_head.scored_forward)
    entropy_sum: torch.Tensor | None = None  # per sequence, summed over completion tokens, detached
    aux_loss: torch.Tensor | None = None  # a mixture-of-experts router loss for the whole forward, when asked for


def completion_logps(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    completion_mask: torch.Tensor,
    *,
    chunk_size: int | str | None = None,
    **forward_kwargs,
) -> CompletionLogps:
    """Run `model` once and sum each sequence's completion-token log-probs. The LM head runs on the positions that
    predict a completion token only (`aligntune.modeling.lm_head`), in chunks when `chunk_size` asks for them."""
    from aligntune.modeling.lm_head import scored_forward

    # Position t predicts token t+1.
    target_mask = completion_mask[:, 1:].bool()
    targets = input_ids[:, 1:][target_mask]
    rows, columns = torch.nonzero(target_mask, as_tuple=True)
    scores, layout = scored_forward(model, rows, columns, targets, chunk_size=chunk_size, input_ids=input_ids,
                                    attention_mask=attention_mask, **forward_kwargs)
    return attrs.evolve(sum_scores(scores, rows, input_ids.size(0)), head_layout=layout)


def sum_scores(scores, rows: torch.Tensor, n: int) -> CompletionLogps:
    """Per-sequence sums of per-position `TokenScores`; `rows[i]` is the sequence position i belongs to."""
    token_logps = scores.token_logps
    zeros = torch.zeros(n, dtype=token_logps.dtype, device=token_logps.device)
    logps = zeros.index_add(0, rows, token_logps)
    lengths = torch.bincount(rows, minlength=n)
    with torch.no_grad():
        denom = lengths.clamp(min=1).to(token_logps.dtype)
        mean_logits = zeros.index_add(0, rows, scores.mean_logits) / denom
        token_accuracy = zeros.index_add(0, rows, scores.top1) / denom
        entropy_sum = zeros.index_add(0, rows, scores.entropy)
    return CompletionLogps(logps=logps, lengths=lengths, mean_logits=mean_logits, token_accuracy=token_accuracy,
                           entropy_sum=entropy_sum, aux_loss=scores.aux_loss)


def score_tokens(selected: torch.Tensor, targets: torch.Tensor, rows: torch.Tensor, n: int) -> CompletionLogps:
    """Per-sequence sums from the logits of the positions that predict completion tokens.

    `selected[i]` are the logits predicting token `targets[i]` of sequence `rows[i]`; `n` sequences in all.
    Only these rows go through log-softmax, in float32.
    """
    from aligntune.modeling.lm_head import scores_from_logits

    return sum_scores(scores_from_logits(selected, targets), rows, n)


def split_pairs(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a batch laid out as `[chosen rows..., rejected rows...]` into (chosen, rejected)."""
    if values.size(0) % 2:
        raise ValueError(f"a preference batch has an even number of rows (chosen then rejected), got {values.size(0)}")
    chosen, rejected = values.chunk(2, dim=0)
    return chosen, rejected
