"""Per-sequence log-probabilities of completion tokens.

A batch holds `input_ids`, `attention_mask` and `completion_mask` (1 on completion tokens). The log-prob of a
sequence is the sum, over its completion tokens t, of log p(token_t | tokens_<t): the prompt is context only.
Two options of TRL's DPO change that sum or weigh it (same meaning as TRL 1.16):
- `ld_alpha` (LD-DPO, length desensitisation): per pair, the first min(len_chosen, len_rejected) completion tokens of
  each side count fully and the tokens beyond that shared length count `ld_alpha` times.
- WPO weights (`wpo`): per sequence, exp(mean over completion tokens of log p(token) − log Σ_v p_v²), detached; a
  pair's weight is the chosen weight times the rejected weight (`pair_weights`). Only
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
    # With `ld_alpha`, `logps` is the length-desensitised sum and this the plain one (every token at full weight): a
    # likelihood loss (sft) reads it, as TRL's does. None: the same as `logps`.
    plain_logps: torch.Tensor | None = None
    # With `wpo`: mean over completion tokens of log p(token) − log Σ_v p_v² (detached); exp() is the WPO weight.
    wpo_log_weights: torch.Tensor | None = None


def completion_logps(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    completion_mask: torch.Tensor,
    *,
    chunk_size: int | str | None = None,
    ld_alpha: float | None = None,
    wpo: bool = False,
    **forward_kwargs,
) -> CompletionLogps:
    """Run `model` once and sum each sequence's completion-token log-probs. The LM head runs on the positions that
    predict a completion token only (`aligntune.modeling.lm_head`), in chunks when `chunk_size` asks for them.
    `ld_alpha` and `wpo` need a preference batch (`[chosen rows..., rejected rows...]`); see the module docstring."""
    from aligntune.modeling.lm_head import scored_forward

    # Position t predicts token t+1.
    target_mask = completion_mask[:, 1:].bool()
    targets = input_ids[:, 1:][target_mask]
    rows, columns = torch.nonzero(target_mask, as_tuple=True)
    scores, layout = scored_forward(model, rows, columns, targets, chunk_size=chunk_size, sum_sq=wpo,
                                    input_ids=input_ids, attention_mask=attention_mask, **forward_kwargs)
    return attrs.evolve(sum_scores(scores, rows, input_ids.size(0), ld_alpha=ld_alpha), head_layout=layout)


def token_ordinals(rows: torch.Tensor, n: int) -> torch.Tensor:
    """For each scored position, its index among its own sequence's completion tokens (0, 1, ...). Positions of one
    sequence must appear in order (both layouts list them so); they need not be contiguous."""
    order = torch.argsort(rows, stable=True)
    counts = torch.bincount(rows, minlength=n)
    starts = torch.cumsum(counts, 0) - counts
    ordinals = torch.empty_like(rows)
    ordinals[order] = torch.arange(rows.numel(), device=rows.device) - starts[rows[order]]
    return ordinals


def _length_desensitised(token_logps: torch.Tensor, rows: torch.Tensor, lengths: torch.Tensor, n: int,
                         ld_alpha: float) -> torch.Tensor:
    """LD-DPO's sum: tokens within the pair's shared length min(len_chosen, len_rejected) at full weight, the rest
    `ld_alpha` times (two sums combined, as TRL does, so the rounding matches)."""
    chosen, rejected = split_pairs(lengths)
    shared = torch.minimum(chosen, rejected).repeat(2)
    in_shared = token_ordinals(rows, n) < shared[rows]
    zeros = torch.zeros(n, dtype=token_logps.dtype, device=token_logps.device)
    head = zeros.index_add(0, rows, torch.where(in_shared, token_logps, torch.zeros_like(token_logps)))
    tail = zeros.index_add(0, rows, torch.where(in_shared, torch.zeros_like(token_logps), token_logps))
    return head + ld_alpha * tail


def sum_scores(scores, rows: torch.Tensor, n: int, *, ld_alpha: float | None = None) -> CompletionLogps:
    """Per-sequence sums of per-position `TokenScores`; `rows[i]` is the sequence position i belongs to. With
    `ld_alpha` the rows are a preference batch (`[chosen..., rejected...]`) and `logps` is length-desensitised."""
    token_logps = scores.token_logps
    zeros = torch.zeros(n, dtype=token_logps.dtype, device=token_logps.device)
    plain = zeros.index_add(0, rows, token_logps)
    lengths = torch.bincount(rows, minlength=n)
    logps = plain if ld_alpha is None else _length_desensitised(token_logps, rows, lengths, n, ld_alpha)
    with torch.no_grad():
        denom = lengths.clamp(min=1).to(token_logps.dtype)
        mean_logits = zeros.index_add(0, rows, scores.mean_logits) / denom
        token_accuracy = zeros.index_add(0, rows, scores.top1) / denom
        entropy_sum = zeros.index_add(0, rows, scores.entropy)
        wpo = None
        if scores.log_sum_sq_probs is not None:
            # Per token log p − log Σp² (the policy's own probability relative to its expected one), averaged.
            aligned = token_logps.detach() - scores.log_sum_sq_probs
            wpo = zeros.index_add(0, rows, aligned) / denom
    return CompletionLogps(logps=logps, lengths=lengths, mean_logits=mean_logits, token_accuracy=token_accuracy,
                           entropy_sum=entropy_sum, aux_loss=scores.aux_loss,
                           plain_logps=None if ld_alpha is None else plain, wpo_log_weights=wpo)


def pair_weights(logps: CompletionLogps) -> torch.Tensor:
    """WPO's per-pair weight, exp(chosen mean) · exp(rejected mean) of `wpo_log_weights`, shape `(pairs,)`."""
    if logps.wpo_log_weights is None:
        raise ValueError("pair_weights needs log-probs computed with wpo=True (preference_logps(..., wpo=True))")
    chosen, rejected = split_pairs(torch.exp(logps.wpo_log_weights))
    return chosen * rejected


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
