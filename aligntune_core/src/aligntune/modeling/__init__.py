"""The preference forward pass: tokenizing pairs as training does and per-sequence completion log-probs."""

from aligntune.modeling.logps import CompletionLogps, completion_logps, split_pairs
from aligntune.modeling.tokenize import collate_pairs, tokenize_pair

__all__ = ["CompletionLogps", "collate_pairs", "completion_logps", "split_pairs", "tokenize_pair"]
