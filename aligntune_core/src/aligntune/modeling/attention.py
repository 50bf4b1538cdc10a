"""Attention masks for prefix-shared and packed rows, built from per-token segment labels.

A shared or packed row says, for every position, which pair it belongs to (`segment_ids`: 1, 2, ... ; 0 for
padding) and what it is (`segment_kind`: prompt, chosen, rejected, pad). Position q may attend to position k when
both are in the same pair, k <= q, and q is not a rejected token looking at a chosen one; a pad position attends to
itself only (so no softmax row is empty). From these labels:

- `dense_mask`: the additive `[rows, 1, L, L]` mask (0 attend, dtype-min blocked) that SDPA and eager attention
  take: quadratic in the row length, built on the batch's device in one vectorised step;
- `block_mask`: a FlexAttention `BlockMask` over the same rule: only the blocks that hold an allowed pair are
  computed (block-sparse), and no L x L tensor exists. Used when the model runs `flex_attention` (on a GPU).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

PROMPT, CHOSEN, REJECTED, PAD = 0, 1, 2, 3
FLEX = "flex_attention"
DENSE_MASK_IMPLEMENTATIONS = ("sdpa", "eager")


def allowed(segment_ids: torch.Tensor, segment_kind: torch.Tensor) -> torch.Tensor:
    """Boolean `[rows, L, L]`: may query q attend to key k."""
    length = segment_ids.size(1)
    index = torch.arange(length, device=segment_ids.device)
    query_seg, key_seg = segment_ids[:, :, None], segment_ids[:, None, :]
    query_kind, key_kind = segment_kind[:, :, None], segment_kind[:, None, :]
    causal = index[None, None, :] <= index[None, :, None]
    same = (query_seg == key_seg) & (query_seg > 0)
    crossing = (query_kind == REJECTED) & (key_kind == CHOSEN)
    pad_self = (query_seg == 0) & torch.eye(length, dtype=torch.bool, device=segment_ids.device)[None]
    return (same & causal & ~crossing) | pad_self


def dense_mask(segment_ids: torch.Tensor, segment_kind: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    mask = torch.zeros((segment_ids.size(0), 1, segment_ids.size(1), segment_ids.size(1)), dtype=dtype,
                       device=segment_ids.device)
    return mask.masked_fill_(~allowed(segment_ids, segment_kind)[:, None], torch.finfo(dtype).min)


def mask_mod_for(segment_ids: torch.Tensor, segment_kind: torch.Tensor):
    """The same rule as `allowed`, as a FlexAttention `mask_mod(b, h, q, k)`."""

    def mask_mod(b, h, q, k):
        same = (segment_ids[b, q] == segment_ids[b, k]) & (segment_ids[b, q] > 0)
        crossing = (segment_kind[b, q] == REJECTED) & (segment_kind[b, k] == CHOSEN)
        pad_self = (segment_ids[b, q] == 0) & (q == k)
        return (same & (k <= q) & ~crossing) | pad_self

    return mask_mod


def block_mask(segment_ids: torch.Tensor, segment_kind: torch.Tensor):
    from torch.nn.attention.flex_attention import create_block_mask

    rows, length = segment_ids.shape
    # On a GPU the mask is built by a compiled kernel, block by block: no rows x L x L tensor exists even briefly
    # (uncompiled, create_block_mask evaluates mask_mod on every (q, k) pair at once).
    return create_block_mask(mask_mod_for(segment_ids, segment_kind), rows, None, length, length,
                             device=segment_ids.device, _compile=segment_ids.is_cuda)


def attention_implementation(model: torch.nn.Module) -> str | None:
    from aligntune.modeling.lm_head import model_config

    return getattr(model_config(model), "_attn_implementation", None)


def uses_position_ids_only(implementation: str | None) -> bool:
    """Attention that finds packed sequences from `position_ids` (variable-length kernels) and takes no mask."""
    return implementation is not None and implementation.startswith("flash_attention")


def shared_attention_mask(model: torch.nn.Module, batch: Mapping[str, torch.Tensor]):
    """The mask a shared/packed batch needs for `model`: a `BlockMask` under flex attention, the dense additive
    mask in the model's dtype under sdpa/eager (a batch that already carries a dense mask keeps it), or None for rows
    of whole sequences (`share=False`) under variable-length attention or without segment labels: then
    `position_ids` alone say where each sequence starts."""
    if "attention_mask" in batch:
        mask = batch["attention_mask"]
        return mask.to(next(model.parameters()).dtype) if mask.is_floating_point() else mask
    implementation = attention_implementation(model)
    whole_sequences = "prefix_shared" in batch and not bool(batch["prefix_shared"])
    if whole_sequences and ("segment_ids" not in batch or uses_position_ids_only(implementation)):
        return None
    segment_ids, segment_kind = batch["segment_ids"], batch["segment_kind"]
    if implementation == FLEX:
        return block_mask(segment_ids, segment_kind)
    return dense_mask(segment_ids, segment_kind, next(model.parameters()).dtype)
