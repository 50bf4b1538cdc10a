"""The DPO loss library: the public loss contract and the built-in losses.

    from aligntune.losses import compute_loss
    out = compute_loss("sigmoid", policy_chosen_logps=..., policy_rejected_logps=..., ref_chosen_logps=...,
                       ref_rejected_logps=..., beta=0.1)
    out.losses, out.chosen_rewards, out.rejected_rewards  # one value per pair

The names are imported lazily: plugin discovery imports `aligntune.losses.builtin` without importing torch.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "LossInputs",
    "LossOutput",
    "ResolvedLoss",
    "compute_loss",
    "resolve_loss",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from aligntune.losses import contract

        return getattr(contract, name)
    raise AttributeError(f"module 'aligntune.losses' has no attribute {name!r}")
