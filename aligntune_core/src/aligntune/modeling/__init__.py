"""The preference forward pass: tokenizing pairs as training does, per-sequence completion log-probs, and the
prefix-shared / packed layout that computes them with less work."""

from aligntune.modeling.logps import CompletionLogps, completion_logps, pair_weights, split_pairs
from aligntune.modeling.shared import SHARED_KEY, SharedPreferenceCollator, collate_shared, shared_completion_logps
from aligntune.modeling.tokenize import collate_pairs, tokenize_pair

__all__ = [
    "SHARED_KEY",
    "CompletionLogps",
    "SharedPreferenceCollator",
    "collate_pairs",
    "collate_shared",
    "completion_logps",
    "pair_weights",
    "preference_logps",
    "shared_completion_logps",
    "split_pairs",
    "tokenize_pair",
]


def preference_logps(model, batch, *, chunk_size: int | str | None = None, router_logits: bool = False,
                     ld_alpha: float | None = None, wpo: bool = False) -> CompletionLogps:
    """Completion log-probs of a preference batch in either layout, as `[chosen..., rejected...]`; the LM head runs
    on the scored positions only, in chunks of positions when `chunk_size` (or "auto") asks for them. With
    `router_logits`, a mixture-of-experts model also returns its router load-balancing loss (`aux_loss`).
    `ld_alpha` makes `logps` length-desensitised (LD-DPO) and `wpo` adds WPO's sequence weights
    (`aligntune.modeling.logps`; `pair_weights` combines them per pair)."""
    extra = {"output_router_logits": True} if router_logits else {}
    if SHARED_KEY in batch:
        return shared_completion_logps(model, batch, chunk_size=chunk_size, ld_alpha=ld_alpha, wpo=wpo, **extra)
    return completion_logps(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"],
                            chunk_size=chunk_size, ld_alpha=ld_alpha, wpo=wpo, **extra)
