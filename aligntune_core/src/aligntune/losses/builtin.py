"""Built-in DPO losses, registered through the plugin manager like any third-party loss."""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from aligntune.losses.contract import LossInputs
from aligntune.plugins.hookspecs import hookimpl
from aligntune.plugins.records import LossSpec


def sigmoid(inputs: LossInputs) -> torch.Tensor:
    """DPO's logistic loss; with label smoothing ε it is conservative DPO (cDPO):
    −(1−ε)·log σ(βΔ) − ε·log σ(−βΔ)."""
    scaled = inputs.beta * inputs.logits
    eps = inputs.label_smoothing
    return -(1.0 - eps) * F.logsigmoid(scaled) - eps * F.logsigmoid(-scaled)


def hinge(inputs: LossInputs) -> torch.Tensor:
    """SLiC-style hinge: relu(1 − βΔ)."""
    return torch.relu(1.0 - inputs.beta * inputs.logits)


def ipo(inputs: LossInputs) -> torch.Tensor:
    """IPO in TRL 1.x's form: each side's log-ratio divided by its completion length, then (Δ − 1/(2β))²."""
    assert inputs.chosen_lengths is not None and inputs.rejected_lengths is not None
    chosen = inputs.chosen_logratios / inputs.chosen_lengths.clamp(min=1)
    rejected = inputs.rejected_logratios / inputs.rejected_lengths.clamp(min=1)
    return (chosen - rejected - 1.0 / (2.0 * inputs.beta)) ** 2


@hookimpl
def aligntune_losses() -> Iterator[LossSpec]:
    yield LossSpec(name="sigmoid", summary="DPO logistic loss; label_smoothing gives conservative DPO", fn=sigmoid)
    yield LossSpec(name="hinge", summary="SLiC hinge loss relu(1 - beta*delta)", fn=hinge)
    yield LossSpec(name="ipo", summary="IPO squared loss on length-normalised log-ratios", fn=ipo, needs_lengths=True)
