"""Tokenizing preference pairs exactly as training does, for scoring outside a trainer (demo, evaluation).

The rule (TRL's): tokenize the prompt alone and prompt + completion (standard text gets the EOS token appended;
conversations are rendered with the chat template, the prompt with the generation prompt), and start the
completion where the two token lists first differ.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch


def _ids(tokenizer, text_or_messages, *, add_generation_prompt: bool = False) -> list[int]:
    if isinstance(text_or_messages, str):
        return list(tokenizer(text_or_messages)["input_ids"])
    ids = tokenizer.apply_chat_template(
        list(text_or_messages), tokenize=True, add_generation_prompt=add_generation_prompt, return_dict=False
    )
    if isinstance(ids, Mapping):  # some tokenizers return a BatchEncoding regardless
        ids = ids["input_ids"]
    return list(ids)


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens `a` and `b` share (where a completion starts after its prompt's tokens)."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def tokenize_pair(tokenizer, row: Mapping[str, Any]) -> dict[str, list[int]]:
    """`{prompt_ids, chosen_ids, rejected_ids}` for one `{prompt, chosen, rejected}` row."""
    prompt = row["prompt"]
    if isinstance(prompt, str):
        eos = tokenizer.eos_token or ""
        chosen_text = row["chosen"] if row["chosen"].endswith(eos) else row["chosen"] + eos
        rejected_text = row["rejected"] if row["rejected"].endswith(eos) else row["rejected"] + eos
        prompt_ids = _ids(tokenizer, prompt)
        chosen_full = _ids(tokenizer, prompt + chosen_text)
        rejected_full = _ids(tokenizer, prompt + rejected_text)
    else:
        prompt_ids = _ids(tokenizer, prompt, add_generation_prompt=True)
        chosen_full = _ids(tokenizer, list(prompt) + list(row["chosen"]))
        rejected_full = _ids(tokenizer, list(prompt) + list(row["rejected"]))
    start = min(common_prefix_length(prompt_ids, chosen_full), common_prefix_length(prompt_ids, rejected_full))
    return {"prompt_ids": prompt_ids[:start], "chosen_ids": chosen_full[start:], "rejected_ids": rejected_full[start:]}


def collate_pairs(
    examples: Sequence[Mapping[str, list[int]]], *, pad_token_id: int, max_length: int | None = None
) -> dict[str, torch.Tensor]:
    """Right-padded batch laid out `[chosen rows..., rejected rows...]` with a `completion_mask`.

    Sequences longer than `max_length` keep their start (training's truncation).
    """
    sequences, masks = [], []
    for side in ("chosen_ids", "rejected_ids"):
        for ex in examples:
            ids = list(ex["prompt_ids"]) + list(ex[side])
            mask = [0] * len(ex["prompt_ids"]) + [1] * len(ex[side])
            if max_length is not None:
                ids, mask = ids[:max_length], mask[:max_length]
            sequences.append(ids)
            masks.append(mask)
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    completion_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, (ids, mask) in enumerate(zip(sequences, masks)):
        input_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[i, : len(ids)] = 1
        completion_mask[i, : len(mask)] = torch.tensor(mask, dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "completion_mask": completion_mask}
