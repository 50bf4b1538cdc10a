"""Accounting for pairs after tokenization: which fit `max_seq_length`, which were cut, which had to be dropped.

Every pair the data adapter kept is either trained on (whole or cut) or counted here with its reason; none
disappears without a word.
"""

from __future__ import annotations

import statistics
from array import array
from collections.abc import Iterable
from typing import Any

import structlog

from aligntune.errors import DataError

log = structlog.get_logger("aligntune.data")

PROMPT_FILLS_MAX_SEQ_LENGTH = "prompt_fills_max_seq_length"


class LengthCounter:
    """Counts pairs as they are tokenized (a whole dataset, or a stream as training reads it)."""

    def __init__(self, *, max_seq_length: int | None, max_prompt_length: int | None,
                 truncation_mode: str = "keep_start", max_completion_length: int | None = None):
        self.max_seq_length = max_seq_length
        self.max_prompt_length = max_prompt_length
        self.max_completion_length = max_completion_length
        self.truncation_mode = truncation_mode
        self.pairs = self.dropped = self.prompt_cut = self.completion_cut = self.completion_limit_cut = 0
        self.prompt_lengths = array("l")

    def add(self, prompt: int, chosen: int, rejected: int) -> bool:
        """Count one pair (token counts as tokenized, before any prompt cut); False: it is dropped."""
        self.pairs += 1
        self.prompt_lengths.append(prompt)
        if self.max_prompt_length is not None and prompt > self.max_prompt_length:
            self.prompt_cut += 1
            prompt = self.max_prompt_length
        limit = self.max_completion_length
        if limit is not None and max(chosen, rejected) > limit:
            self.completion_limit_cut += 1
            chosen, rejected = min(chosen, limit), min(rejected, limit)
        if self.max_seq_length is None:
            return True
        if self.truncation_mode == "keep_start" and prompt >= self.max_seq_length:
            self.dropped += 1
            return False
        if prompt + max(chosen, rejected) > self.max_seq_length:
            self.completion_cut += 1
        return True

    def report(self) -> dict[str, Any]:
        lengths = self.prompt_lengths
        return {
            "pairs_in": self.pairs,
            "pairs_kept": self.pairs - self.dropped,
            "dropped": {PROMPT_FILLS_MAX_SEQ_LENGTH: self.dropped} if self.dropped else {},
            "prompt_truncated": self.prompt_cut,
            # keep_start cuts the end of the longer completion; keep_end cuts the start of the prompt instead
            "completion_truncated" if self.truncation_mode == "keep_start" else "start_truncated": self.completion_cut,
            "max_seq_length": self.max_seq_length,
            "max_prompt_length": self.max_prompt_length,
            **({"completion_cut_to_max_completion_length": self.completion_limit_cut,
                "max_completion_length": self.max_completion_length} if self.max_completion_length else {}),
            "prompt_tokens": {"max": max(lengths, default=0), "median": statistics.median(lengths) if lengths else 0},
        }


def tokenization_report(
    lengths: Iterable[tuple[int, int, int]],
    *,
    max_seq_length: int | None,
    max_prompt_length: int | None,
    truncation_mode: str = "keep_start",
    max_completion_length: int | None = None,
) -> dict[str, Any]:
    """`lengths`: (prompt, chosen, rejected) token counts of each pair as tokenized, before any cut."""
    counter = LengthCounter(max_seq_length=max_seq_length, max_prompt_length=max_prompt_length,
                            truncation_mode=truncation_mode, max_completion_length=max_completion_length)
    for prompt, chosen, rejected in lengths:
        counter.add(prompt, chosen, rejected)
    return counter.report()


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
    if report.get("completion_cut_to_max_completion_length"):
        log.info(f"{report['completion_cut_to_max_completion_length']} {dataset_name} pairs have a completion cut to "
                 f"its first max_completion_length={report['max_completion_length']} tokens")
