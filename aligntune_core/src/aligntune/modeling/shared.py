"""Prefix sharing and padding-free packing for the preference forward pass.

Plain DPO batches hold each pair twice, `[prompt | chosen]` and `[prompt | rejected]`, so the prompt is encoded
twice and short rows are padded to the longest. A prefix-shared segment holds a pair once, `[prompt | chosen |
rejected]`, with an attention mask in which rejected tokens see the prompt but not the chosen tokens, and with
rejected positions restarting after the prompt: every token sees exactly the context it would see alone, so the
log-probs equal the two-sequence computation (to float rounding). Packing puts several segments in one row, with a
block-diagonal mask and per-segment positions, so no pad tokens are computed beyond the end of the last row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs
import torch

SHARED_KEY = "shared_layout"


@attrs.frozen
class Segment:
    prompt: list[int]
    chosen: list[int]
    rejected: list[int]

    @property
    def length(self) -> int:
        return len(self.prompt) + len(self.chosen) + len(self.rejected)

    @property
    def unshared_length(self) -> int:
        """Tokens of `[prompt | chosen]` and `[prompt | rejected]` as two whole sequences."""
        return 2 * len(self.prompt) + len(self.chosen) + len(self.rejected)


def make_segment(example: Mapping[str, list[int]], max_length: int | None) -> Segment:
    """Truncate like training does: each of prompt+chosen and prompt+rejected keeps its first `max_length` tokens."""
    prompt, chosen, rejected = list(example["prompt_ids"]), list(example["chosen_ids"]), list(example["rejected_ids"])
    if max_length is not None:
        prompt = prompt[:max_length]
        room = max_length - len(prompt)
        chosen, rejected = chosen[:room], rejected[:room]
    return Segment(prompt, chosen, rejected)


def _rows(segments: Sequence[Segment], pack: bool, row_tokens: int | None, share: bool = True) -> list[list[int]]:
    """Which segments go into which row (segment indices). Packing fills rows first-fit, longest segment first, up
    to `row_tokens` or the longest segment, whichever is more: every row is padded to the widest one anyway, so
    filling rows up to that width costs no extra padding."""
    if not pack:
        return [[i] for i in range(len(segments))]
    lengths = [s.length if share else s.unshared_length for s in segments]
    limit = max(row_tokens or sum(lengths), max(lengths, default=0))
    rows: list[list[int]] = []
    filled: list[int] = []
    for index in sorted(range(len(segments)), key=lambda i: -lengths[i]):
        for row, used in enumerate(filled):
            if used + lengths[index] <= limit:
                rows[row].append(index)
                filled[row] += lengths[index]
                break
        else:
            rows.append([index])
            filled.append(lengths[index])
    return rows


def collate_shared(
    examples: Sequence[Mapping[str, list[int]]],
    *,
    pad_token_id: int,
    max_length: int | None = None,
    pack: bool = False,
    row_tokens: int | None = None,
    dtype: torch.dtype = torch.float32,
    dense_mask: bool = True,
    share: bool = True,
    pad_to_multiple_of: int | None = None,
) -> dict[str, torch.Tensor]:
    """A prefix-shared (optionally packed) batch: `input_ids`, `position_ids`, per-token `segment_ids` (the pair,
    from 1; 0 on padding) and `segment_kind` (prompt/chosen/rejected/pad, `aligntune.modeling.attention`), for each
    side the flat index of the position that predicts each completion token, the token, and the pair it belongs to;
    with `dense_mask`, also the additive 4-D `attention_mask` `[rows, 1, L, L]` (0 attend, dtype-min blocked).
    Without it the mask is built at forward time for the model's attention (`shared_attention_mask`).

    With `share=False` a pair is laid out as two whole sequences, `[prompt | chosen]` then `[prompt | rejected]`,
    each its own segment with positions from 0: packing without prefix sharing. Such rows also work with no mask
    at all, from `position_ids` alone (variable-length attention: flash attention, or transformers' packed-sequence
    masks), since no token needs more than "earlier tokens of my own sequence". `pad_to_multiple_of` rounds the
    row width up to a multiple of it (TRL's option of that name: some kernels run faster on such shapes)."""
    from aligntune.modeling.attention import CHOSEN, PAD, PROMPT, REJECTED
    from aligntune.modeling.attention import dense_mask as make_dense_mask

    segments = [make_segment(example, max_length) for example in examples]
    layout = _rows(segments, pack, row_tokens, share)
    width = max(sum(segments[i].length if share else segments[i].unshared_length for i in row) for row in layout)
    if pad_to_multiple_of:
        width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    n_rows = len(layout)
    input_ids = torch.full((n_rows, width), pad_token_id, dtype=torch.long)
    position_ids = torch.zeros((n_rows, width), dtype=torch.long)
    segment_ids = torch.zeros((n_rows, width), dtype=torch.long)
    segment_kind = torch.full((n_rows, width), PAD, dtype=torch.long)
    sides: dict[str, dict[str, list[int]]] = {
        side: {"positions": [], "targets": [], "pairs": []} for side in ("chosen", "rejected")
    }
    tokens = 0
    for row, members in enumerate(layout):
        start = 0
        for pair in members:
            seg = segments[pair]
            p, c, r = len(seg.prompt), len(seg.chosen), len(seg.rejected)
            if share:  # [prompt | chosen | rejected]; rejected positions restart after the prompt
                ids = seg.prompt + seg.chosen + seg.rejected
                positions = [*range(p + c), *range(p, p + r)]
                segment = [pair + 1] * len(ids)
                offsets = {"chosen": (p, start + p - 1), "rejected": (p + c, start + p - 1)}
            else:  # [prompt | chosen] [prompt | rejected]: two sequences
                ids = seg.prompt + seg.chosen + seg.prompt + seg.rejected
                positions = [*range(p + c), *range(p + r)]
                segment = [2 * pair + 1] * (p + c) + [2 * pair + 2] * (p + r)
                offsets = {"chosen": (p, start + p - 1), "rejected": (2 * p + c, start + p + c + p - 1)}
            length = len(ids)
            input_ids[row, start : start + length] = torch.tensor(ids, dtype=torch.long)
            position_ids[row, start : start + length] = torch.tensor(positions, dtype=torch.long)
            segment_ids[row, start : start + length] = torch.tensor(segment, dtype=torch.long)
            kinds = [PROMPT] * p + [CHOSEN] * c + ([REJECTED] * r if share else [PROMPT] * p + [REJECTED] * r)
            segment_kind[row, start : start + length] = torch.tensor(kinds, dtype=torch.long)
            # Token k of a side is predicted by the position before it; the first by the last prompt token.
            for side, count in (("chosen", c), ("rejected", r)):
                offset, first_predictor = offsets[side]
                for k in range(count):
                    if k == 0:
                        if p == 0:
                            continue  # nothing predicts a completion's first token without a prompt
                        predictor = first_predictor
                    else:
                        predictor = start + offset + k - 1
                    sides[side]["positions"].append(row * width + predictor)
                    sides[side]["targets"].append(ids[offset + k])
                    sides[side]["pairs"].append(pair)
            start += length
            tokens += length
    batch = {
        "input_ids": input_ids,
        "position_ids": position_ids,
        "segment_ids": segment_ids,
        "segment_kind": segment_kind,
        "num_pairs": torch.tensor(len(segments)),
        "num_tokens": torch.tensor(tokens),
        "prefix_shared": torch.tensor(share),
        SHARED_KEY: torch.tensor(1),
    }
    if dense_mask:
        batch["attention_mask"] = make_dense_mask(segment_ids, segment_kind, dtype)
    for side, values in sides.items():
        batch[f"{side}_positions"] = torch.tensor(values["positions"], dtype=torch.long)
        batch[f"{side}_targets"] = torch.tensor(values["targets"], dtype=torch.long)
        batch[f"{side}_pairs"] = torch.tensor(values["pairs"], dtype=torch.long)
    return batch


def shared_completion_logps(model: torch.nn.Module, batch: Mapping[str, torch.Tensor], *,
                            chunk_size: int | str | None = None, ld_alpha: float | None = None, wpo: bool = False,
                            **forward_kwargs):
    """Run `model` once over a prefix-shared batch; returns `CompletionLogps` laid out `[chosen..., rejected...]`
    (one entry per pair and side), like the two-sequence computation. The LM head runs on the scored positions
    only (both sides at once), in chunks when `chunk_size` asks for them; `ld_alpha`/`wpo` as `completion_logps`."""
    from aligntune.modeling.attention import shared_attention_mask
    from aligntune.modeling.lm_head import scored_forward
    from aligntune.modeling.logps import sum_scores

    width = batch["input_ids"].size(1)
    flat = torch.cat([batch["chosen_positions"], batch["rejected_positions"]])
    targets = torch.cat([batch["chosen_targets"], batch["rejected_targets"]])
    n = int(batch["num_pairs"])
    scores, layout = scored_forward(
        model, torch.div(flat, width, rounding_mode="floor"), flat % width, targets, chunk_size=chunk_size, sum_sq=wpo,
        input_ids=batch["input_ids"], attention_mask=shared_attention_mask(model, batch),
        position_ids=batch["position_ids"], **forward_kwargs,
    )
    # Chosen positions first, then rejected: sequence index = pair (chosen) or n + pair (rejected). A pair's
    # positions of one side are listed in token order (what `ld_alpha`'s shared length counts on).
    rows = torch.cat([batch["chosen_pairs"], batch["rejected_pairs"] + n])
    return attrs.evolve(sum_scores(scores, rows, 2 * n, ld_alpha=ld_alpha), head_layout=layout)


@attrs.define
class SharedPreferenceCollator:
    """Collates tokenized pairs (`prompt_ids`, `chosen_ids`, `rejected_ids`, optionally precomputed
    `ref_chosen_logps`/`ref_rejected_logps`) into the prefix-shared layout, packed when `pack` is set."""

    pad_token_id: int
    max_length: int | None = None
    pack: bool = False
    row_tokens: int | None = None  # None with `pack`: every pair of the batch in one row
    share: bool = True  # False: each pair as two whole sequences (packing without prefix sharing)
    pad_to_multiple_of: int | None = None  # the row width is rounded up to a multiple of it

    def __call__(self, examples: Sequence[Mapping[str, object]]) -> dict[str, torch.Tensor]:
        # No mask here: it is built on the model's device for its attention (dense, or a flex block mask).
        batch = collate_shared(examples, pad_token_id=self.pad_token_id, max_length=self.max_length, pack=self.pack,
                               row_tokens=self.row_tokens, dense_mask=False, share=self.share,
                               pad_to_multiple_of=self.pad_to_multiple_of)
        for key in ("ref_chosen_logps", "ref_rejected_logps"):
            if key in examples[0]:
                batch[key] = torch.tensor([example[key] for example in examples])
        return batch
