"""Built-in losses, registered through the plugin manager like any third-party loss.

This module stays light: the formulas (and torch) are imported when a loss is first computed.
"""

from __future__ import annotations

from collections.abc import Iterator

from aligntune.plugins.hookspecs import hookimpl
from aligntune.plugins.records import LossSpec, lazy

_FORMULAS = "aligntune.losses.formulas"


@hookimpl
def aligntune_losses() -> Iterator[LossSpec]:
    yield LossSpec(
        name="sigmoid",
        summary="DPO logistic loss; label_smoothing > 0 gives conservative DPO",
        fn=lazy(f"{_FORMULAS}:sigmoid"),
    )
    yield LossSpec(name="hinge", summary="SLiC hinge loss relu(1 - beta*delta)", fn=lazy(f"{_FORMULAS}:hinge"))
    yield LossSpec(
        name="ipo",
        summary="IPO squared loss on length-normalised log-ratios (TRL 1.x form)",
        fn=lazy(f"{_FORMULAS}:ipo"),
        needs_lengths=True,
    )
