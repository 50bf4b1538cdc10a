"""The preference forward pass: per-sequence log-probabilities of completions."""

from aligntune.modeling.logps import CompletionLogps, completion_logps, split_pairs

__all__ = ["CompletionLogps", "completion_logps", "split_pairs"]
