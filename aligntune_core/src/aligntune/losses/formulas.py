"""The built-in loss formulas (registered in `aligntune.losses.builtin`). Each maps `LossInputs` to per-pair losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from aligntune.losses.contract import LossInputs


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
