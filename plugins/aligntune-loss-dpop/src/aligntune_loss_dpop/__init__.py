"""aligntune plugin: the DPOP loss (Pal et al., 2024, "Smaug: Fixing Failure Modes of Preference Optimisation with
DPO-Positive").

This module is what the entry point loads, so it stays light: the formula (and torch) is imported on first use.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from aligntune.plugins import LossSpec, hookimpl, lazy


def _validate(beta: float, label_smoothing: float, params: dict[str, Any]) -> None:
    strength = params["dpop_lambda"]
    if not isinstance(strength, (int, float)) or isinstance(strength, bool) or strength < 0:
        raise ValueError(f"dpop_lambda (the penalty weight) must be a number >= 0, got {strength!r}")


@hookimpl
def aligntune_losses() -> Iterator[LossSpec]:
    yield LossSpec(
        name="dpop",
        summary="DPO-Positive: DPO plus a penalty when log p(chosen) falls below the reference",
        fn=lazy("aligntune_loss_dpop.formula:dpop"),
        params={"dpop_lambda": 50.0},
        validate=_validate,
    )
