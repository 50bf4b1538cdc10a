"""Running the LM head on the scored positions only, optionally in chunks with recomputation in backward.

A preference forward pass needs the logits of the positions that predict a completion token: about half of a
prefix-shared or packed row, much less of a padded one. Computing `(rows x length, vocab)` logits and then picking
those positions wastes the head's matmul, and its float32 log-softmax buffers, on the prompt and the padding.

`scored_logits` runs the model through its own `forward` (so DDP, FSDP, DeepSpeed, PEFT and every architecture's
own logit post-processing still apply), with a forward pre-hook on the output embedding that hands the head only
the hidden states of the scored positions. The model's "logits" are then `(1, positions, vocab)`.

With `chunk_size`, the pre-hook instead keeps those hidden states and gives the head an empty input; the log-probs
are computed from them a chunk of positions at a time, each chunk recomputed in backward (so only one chunk's
`(chunk, vocab)` float32 buffers exist at once). This path needs the head to be a plain linear layer whose output
is the logits, optionally soft-capped (`final_logit_softcapping`, Gemma 2/3) or scaled (`logit_scale`, Cohere): other
heads fall back to the whole-head path, and `head_layout` says which ran.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from typing import Any

import attrs
import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

# Budget for one chunk's (positions, vocab) float32 logits when chunk_size is "auto": 256 MiB.
AUTO_CHUNK_ELEMENTS = 64 * 1024 * 1024


@attrs.define
class _Capture:
    rows: torch.Tensor
    columns: torch.Tensor  # in the input's length; a longer hidden sequence (virtual tokens) is counted from its end
    length: int
    keep_hidden: bool
    ran: bool = False
    hidden: torch.Tensor | None = None


def unwrap_wrappers(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside DDP / DeepSpeed engine wrappers (`.module`); a PEFT model stays itself (it forwards)."""
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):  # DDP, DeepSpeed engine
        model = model.module
    return model


def output_embeddings(model: torch.nn.Module) -> torch.nn.Module | None:
    inner = unwrap_wrappers(model)
    getter = getattr(inner, "get_output_embeddings", None)
    try:
        return getter() if getter is not None else None
    except (AttributeError, NotImplementedError):
        return None


def model_config(model: torch.nn.Module) -> Any:
    return getattr(unwrap_wrappers(model), "config", None)


@contextlib.contextmanager
def _head_hook(head: torch.nn.Module, capture: _Capture) -> Iterator[None]:
    def pre_hook(_module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]):
        hidden = args[0] if args else kwargs["input"]
        width = hidden.size(-2)
        flat = capture.rows * width + capture.columns + (width - capture.length)
        picked = hidden.reshape(-1, hidden.size(-1)).index_select(0, flat)
        capture.ran = True
        if capture.keep_hidden:
            capture.hidden = picked
            picked = picked[:1]  # one position: the model's own logits there check the chunks' arithmetic
        picked = picked.unsqueeze(0)
        return ((picked, *args[1:]), kwargs) if args else (args, {**kwargs, "input": picked})

    handle = head.register_forward_pre_hook(pre_hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


# Models whose logits were found not to be `post_process(head(hidden))`: chunks are never used for them again.
_NOT_CHUNKABLE: weakref.WeakSet[torch.nn.Module] = weakref.WeakSet()


def chunkable_head(model: torch.nn.Module) -> bool:
    """Whether chunks may compute the logits: a linear head, and not found otherwise on an earlier batch."""
    return isinstance(output_embeddings(model), torch.nn.Linear) and unwrap_wrappers(model) not in _NOT_CHUNKABLE


def _post_process(logits: torch.Tensor, config: Any) -> torch.Tensor:
    """What architectures do to the head's output (each is checked against the model's own logits per batch)."""
    scale = getattr(config, "logit_scale", None)  # Cohere
    if scale not in (None, 1.0):
        logits = logits * scale
    scaling = getattr(config, "logits_scaling", None)  # Granite
    if scaling not in (None, 1.0):
        logits = logits / scaling
    cap = getattr(config, "final_logit_softcapping", None)  # Gemma 2/3
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def resolve_chunk_size(chunk_size: int | str | None, positions: int, vocab: int) -> int | None:
    """`"auto"`: chunks when one pass over the positions would hold more than the budget of float32 logits."""
    if chunk_size is None or chunk_size == 0:
        return None
    if chunk_size == "auto":
        if positions * vocab <= AUTO_CHUNK_ELEMENTS:
            return None
        return max(1, AUTO_CHUNK_ELEMENTS // vocab)
    return int(chunk_size)


@attrs.frozen
class TokenScores:
    """Per scored position: log p(target), the mean logit and whether the target is the top-1 prediction."""

    token_logps: torch.Tensor  # differentiable
    mean_logits: torch.Tensor  # detached
    top1: torch.Tensor  # detached, float
    entropy: torch.Tensor  # detached: entropy of the next-token distribution (TRL's `entropy` metric)
    aux_loss: torch.Tensor | None = None  # a mixture-of-experts model's router load-balancing loss, when asked for
    # detached log Σ_v p_v² of the next-token distribution, when asked for (`sum_sq`): WPO's sequence weights
    log_sum_sq_probs: torch.Tensor | None = None


def _entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) per row, in float32, without keeping a probability buffer for backward."""
    with torch.no_grad():
        return torch.logsumexp(logits, dim=-1) - (torch.softmax(logits, dim=-1) * logits).sum(dim=-1)


def _log_sum_sq_probs(logits: torch.Tensor) -> torch.Tensor:
    """log Σ_v softmax(logits)_v² per row = logsumexp(2·logits) − 2·logsumexp(logits), in float32, detached."""
    with torch.no_grad():
        logits = logits.float()
        return torch.logsumexp(2 * logits, dim=-1) - 2 * torch.logsumexp(logits, dim=-1)


def scores_from_logits(logits: torch.Tensor, targets: torch.Tensor, *, sum_sq: bool = False) -> TokenScores:
    logits = logits.float()
    token_logps = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    with torch.no_grad():
        mean = logits.mean(dim=-1)
        top1 = (logits.argmax(dim=-1) == targets).float()
    return TokenScores(token_logps=token_logps, mean_logits=mean, top1=top1, entropy=_entropy(logits),
                       log_sum_sq_probs=_log_sum_sq_probs(logits) if sum_sq else None)


def _chunk_logps(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor,
                 config: Any) -> torch.Tensor:
    logits = _post_process(F.linear(hidden, weight, bias), config).float()
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def chunked_scores(hidden: torch.Tensor, head: torch.nn.Linear, targets: torch.Tensor, config: Any,
                   chunk_size: int, *, sum_sq: bool = False) -> TokenScores:
    """The same scores as `scores_from_logits(head(hidden), sum_sq=sum_sq)`, a chunk of positions at a time; in
    backward each chunk's logits are recomputed rather than kept."""
    logps, means, top1, entropy, sum_sq_parts = [], [], [], [], []
    for start in range(0, hidden.size(0), chunk_size):
        part, part_targets = hidden[start:start + chunk_size], targets[start:start + chunk_size]
        if torch.is_grad_enabled() and (part.requires_grad or head.weight.requires_grad):
            logps.append(checkpoint(_chunk_logps, part, head.weight, head.bias, part_targets, config,
                                    use_reentrant=False))
        else:
            logps.append(_chunk_logps(part, head.weight, head.bias, part_targets, config))
        with torch.no_grad():
            logits = _post_process(F.linear(part, head.weight, head.bias), config).float()
            means.append(logits.mean(dim=-1))
            top1.append((logits.argmax(dim=-1) == part_targets).float())
            entropy.append(_entropy(logits))
            if sum_sq:
                sum_sq_parts.append(_log_sum_sq_probs(logits))
    empty = hidden.new_zeros(0, dtype=torch.float32)
    return TokenScores(token_logps=torch.cat(logps) if logps else empty,
                       mean_logits=torch.cat(means) if means else empty, top1=torch.cat(top1) if top1 else empty,
                       entropy=torch.cat(entropy) if entropy else empty,
                       log_sum_sq_probs=(torch.cat(sum_sq_parts) if sum_sq_parts else empty) if sum_sq else None)


def scored_forward(model: torch.nn.Module, rows: torch.Tensor, columns: torch.Tensor, targets: torch.Tensor, *,
                   chunk_size: int | str | None = None, sum_sq: bool = False,
                   **forward_kwargs: Any) -> tuple[TokenScores, str]:
    """Run `model(**forward_kwargs)` and score `targets[i]` from the logits at row `rows[i]`, position
    `columns[i]` of `input_ids`. Returns the scores and the head layout that ran: `"scored positions"`,
    `"scored positions, chunks of N"`, or `"all positions"` (a model whose forward never calls its head module).
    With `sum_sq`, the scores also hold log Σ_v p_v² per position (WPO's weights; only computed when asked for)."""
    head = output_embeddings(model)
    config = model_config(model)
    input_ids = forward_kwargs["input_ids"]
    length = input_ids.size(1)
    if head is None:
        return _all_positions(model, rows, columns, targets, length, forward_kwargs, sum_sq), "all positions"
    vocab = head.weight.size(0) if isinstance(head, torch.nn.Linear) else getattr(config, "vocab_size", 0)
    chunk = resolve_chunk_size(chunk_size, int(targets.numel()), int(vocab))
    keep_hidden = chunk is not None and chunkable_head(model)
    device = input_ids.device
    capture = _Capture(rows=rows.to(device), columns=columns.to(device), length=length, keep_hidden=keep_hidden)
    with _head_hook(head, capture):
        outputs = model(use_cache=False, **forward_kwargs)
    aux = getattr(outputs, "aux_loss", None)
    if not capture.ran:  # the forward never called the head module: score from the full logits it returned
        scores = scores_from_logits(_pick(outputs.logits, rows, columns, length), targets, sum_sq=sum_sq)
        return attrs.evolve(scores, aux_loss=aux), "all positions"
    if keep_hidden:
        with torch.no_grad():
            own = outputs.logits[0, 0].float()
            ours = _post_process(F.linear(capture.hidden[:1], head.weight, head.bias), config)[0].float()
        tolerance = 1e-2 if head.weight.dtype != torch.float32 else 1e-4
        if own.numel() and not torch.allclose(own, ours, rtol=tolerance, atol=tolerance):
            _NOT_CHUNKABLE.add(unwrap_wrappers(model))
            _log_fallback(model)
            scores, _ = scored_forward(model, rows, columns, targets, chunk_size=None, sum_sq=sum_sq, **forward_kwargs)
            return scores, "scored positions (chunks disabled: the model post-processes its logits)"
        scores = chunked_scores(capture.hidden, head, targets, config, chunk, sum_sq=sum_sq)
        return attrs.evolve(scores, aux_loss=aux), f"scored positions, chunks of {chunk}"
    scores = scores_from_logits(outputs.logits[0], targets, sum_sq=sum_sq)
    return attrs.evolve(scores, aux_loss=aux), "scored positions"


def _pick(logits: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor, length: int) -> torch.Tensor:
    logits = logits[:, -length:]  # prompt-learning adapters prepend virtual tokens
    return logits[rows, columns]


def _all_positions(model, rows, columns, targets, length, forward_kwargs, sum_sq: bool = False) -> TokenScores:
    outputs = model(use_cache=False, **forward_kwargs)
    scores = scores_from_logits(_pick(outputs.logits, rows, columns, length), targets, sum_sq=sum_sq)
    return attrs.evolve(scores, aux_loss=getattr(outputs, "aux_loss", None))


def _log_fallback(model: torch.nn.Module) -> None:
    import structlog

    structlog.get_logger("aligntune.modeling").warning(
        "chunked log-probs disabled for this model: its logits are not its head's output (an unknown "
        "post-processing step); the head runs on all scored positions at once",
        model=type(unwrap_wrappers(model)).__name__)
