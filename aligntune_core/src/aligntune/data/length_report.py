"""Accounting for pairs after tokenization: which fit `max_seq_length`, which were cut, which had to be dropped.

Every pair the data adapter kept is either trained on (whole or cut) or counted here with its reason; none
disappears without a word.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

import structlog

from aligntune.errors import DataError

log = structlog.get_logger("aligntune.data")

PROMPT_FILLS_MAX_SEQ_LENGTH = "prompt_fills_max_seq_length"


def tokenization_report(
    lengths: Iterable[tuple[int, int, int]],
    *,
    max_seq_length: int | None,
    max_prompt_length: int | None,
    truncation_mode: str = "keep_start",
) -> dict[str, Any]:
    """`lengths`: (prompt, chosen, rejected) token counts of each pair as tokenized, before any prompt cut."""
    pairs = dropped = prompt_cut = completion_cut = 0
    prompt_lengths = []
    for prompt, chosen, rejected in lengths:
        pairs += 1
        prompt_lengths.append(prompt)
        if max_prompt_length is not None and prompt > max_prompt_length:
            prompt_cut += 1
            prompt = max_prompt_length
        if max_seq_length is None:
            continue
        if truncation_mode == "keep_start" and prompt >= max_seq_length:
            dropped += 1
        elif prompt + max(chosen, rejected) > max_seq_length:
            completion_cut += 1
    report: dict[str, Any] = {
        "pairs_in": pairs,
        "pairs_kept": pairs - dropped,
        "dropped": {PROMPT_FILLS_MAX_SEQ_LENGTH: dropped} if dropped else {},
        "prompt_truncated": prompt_cut,
        # keep_start cuts the end of the longer completion; keep_end cuts the start of the prompt instead
        "completion_truncated" if truncation_mode == "keep_start" else "start_truncated": completion_cut,
        "max_seq_length": max_seq_length,
        "max_prompt_length": max_prompt_length,
        "prompt_tokens": {"max": max(prompt_lengths, default=0),
                          "median": statistics.median(prompt_lengths) if prompt_lengths else 0},
    }
    return report


def announce(report: dict[str, Any], dataset_name: str) -> None:
    """Log what tokenization did to the pairs; no pair left is an error that names the setting."""
    pairs, dropped = report["pairs_in"], report["dropped"].get(PROMPT_FILLS_MAX_SEQ_LENGTH, 0)
    longest, median = report["prompt_tokens"]["max"], report["prompt_tokens"]["median"]
    limit = report["max_seq_length"]
    if pairs and dropped == pairs:
        raise DataError(
            f"no {dataset_name} pair fits max_seq_length={limit}: every prompt alone fills it (longest prompt "
            f"{longest} tokens, median {median:g}). Raise max_seq_length, or set max_prompt_length (below "
            f"max_seq_length) to keep the end of each prompt."
        )
    if dropped:
        log.warning(
            f"{dropped} of {pairs} {dataset_name} pairs ({dropped / pairs:.1%}) dropped: the prompt alone fills "
            f"max_seq_length={limit}, leaving no completion token to learn from",
            longest_prompt=longest, median_prompt=median,
            hint="raise max_seq_length, or set max_prompt_length to keep these pairs with the start of the prompt cut",
        )
    cut = report.get("completion_truncated", report.get("start_truncated", 0))
    if cut:
        log.info(f"{cut} of {pairs} {dataset_name} pairs are longer than max_seq_length={limit} and are cut to fit",
                 where="end of the completion" if "completion_truncated" in report else "start of the sequence")
    if report["prompt_truncated"]:
        log.info(f"{report['prompt_truncated']} {dataset_name} prompts cut to their last "
                 f"max_prompt_length={report['max_prompt_length']} tokens")
