"""The built-in loss formulas (registered in `aligntune.losses.builtin`). Each maps `LossInputs` to per-pair losses.

Notation: c = chosen log-ratio (log π − log π_ref of the chosen response), r = rejected log-ratio, Δ = c − r, β the
temperature, ε the label smoothing, |y| a response's token count. Reference log-ratios are 0 when reference-free.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from aligntune.losses.contract import LossInputs


def _smoothed_logistic(x: torch.Tensor, eps: float) -> torch.Tensor:
    """−(1−ε)·log σ(x) − ε·log σ(−x)."""
    return -(1.0 - eps) * F.logsigmoid(x) - eps * F.logsigmoid(-x)


def _lengths(inputs: LossInputs) -> tuple[torch.Tensor, torch.Tensor]:
    assert inputs.chosen_lengths is not None and inputs.rejected_lengths is not None
    return inputs.chosen_lengths.clamp(min=1).to(inputs.logits.dtype), inputs.rejected_lengths.clamp(min=1).to(
        inputs.logits.dtype
    )


def sigmoid(inputs: LossInputs) -> torch.Tensor:
    """DPO: −log σ(βΔ); with ε > 0 conservative DPO (cDPO): −(1−ε)·log σ(βΔ) − ε·log σ(−βΔ)."""
    return _smoothed_logistic(inputs.beta * inputs.logits, inputs.label_smoothing)


def hinge(inputs: LossInputs) -> torch.Tensor:
    """SLiC: max(0, 1 − βΔ)."""
    return torch.relu(1.0 - inputs.beta * inputs.logits)


def ipo(inputs: LossInputs) -> torch.Tensor:
    """IPO as TRL 1.x computes it: (c/|y_w| − r/|y_l| − 1/(2β))²."""
    chosen_length, rejected_length = _lengths(inputs)
    delta = inputs.chosen_logratios / chosen_length - inputs.rejected_logratios / rejected_length
    return (delta - 1.0 / (2.0 * inputs.beta)) ** 2


def exo_pair(inputs: LossInputs) -> torch.Tensor:
    """EXO (pairwise): KL between softmax(β·[c, r]) and the smoothed labels [1−ε, ε]."""
    eps = torch.tensor(inputs.label_smoothing, dtype=inputs.logits.dtype, device=inputs.logits.device)
    x = inputs.beta * inputs.logits
    return torch.sigmoid(x) * (F.logsigmoid(x) - torch.log1p(-eps)) + torch.sigmoid(-x) * (
        F.logsigmoid(-x) - torch.log(eps)
    )


def nca_pair(inputs: LossInputs) -> torch.Tensor:
    """NCA (pairwise): −log σ(βc) − ½·log σ(−βc) − ½·log σ(−βr)."""
    chosen = inputs.beta * inputs.chosen_logratios
    rejected = inputs.beta * inputs.rejected_logratios
    return -F.logsigmoid(chosen) - 0.5 * F.logsigmoid(-chosen) - 0.5 * F.logsigmoid(-rejected)


def robust(inputs: LossInputs) -> torch.Tensor:
    """Robust DPO: (−(1−ε)·log σ(βΔ) + ε·log σ(−βΔ)) / (1 − 2ε), unbiased under label noise ε."""
    x = inputs.beta * inputs.logits
    eps = inputs.label_smoothing
    return (-(1.0 - eps) * F.logsigmoid(x) + eps * F.logsigmoid(-x)) / (1.0 - 2.0 * eps)


def bco_pair(inputs: LossInputs) -> torch.Tensor:
    """BCO (pairwise): −log σ(βc) − log σ(−βr)."""
    return -F.logsigmoid(inputs.beta * inputs.chosen_logratios) - F.logsigmoid(-inputs.beta * inputs.rejected_logratios)


def sppo_hard(inputs: LossInputs) -> torch.Tensor:
    """SPPO with hard labels: (c − 1/(2β))² + (r + 1/(2β))²."""
    half = 0.5 / inputs.beta
    return (inputs.chosen_logratios - half) ** 2 + (inputs.rejected_logratios + half) ** 2


def aot(inputs: LossInputs) -> torch.Tensor:
    """AOT (paired): sort the batch's policy and reference chosen−rejected log-prob gaps separately, then the
    smoothed logistic loss of β·(sorted policy gap − sorted reference gap). Values are per sorted position."""
    policy_gap, _ = torch.sort(inputs.policy_chosen_logps - inputs.policy_rejected_logps, dim=0)
    reference_gap, _ = torch.sort(inputs.ref_chosen_logps - inputs.ref_rejected_logps, dim=0)
    return _smoothed_logistic(inputs.beta * (policy_gap - reference_gap), inputs.label_smoothing)


def aot_unpaired(inputs: LossInputs) -> torch.Tensor:
    """AOT (unpaired): sort chosen and rejected log-ratios separately, then the smoothed logistic loss of their
    difference. Values are per sorted position."""
    chosen, _ = torch.sort(inputs.chosen_logratios, dim=0)
    rejected, _ = torch.sort(inputs.rejected_logratios, dim=0)
    return _smoothed_logistic(inputs.beta * (chosen - rejected), inputs.label_smoothing)


def apo_zero(inputs: LossInputs) -> torch.Tensor:
    """APO-zero (chosen better than the model's outputs): (1 − σ(βc)) + σ(βr)."""
    return (1.0 - torch.sigmoid(inputs.beta * inputs.chosen_logratios)) + torch.sigmoid(
        inputs.beta * inputs.rejected_logratios
    )


def apo_down(inputs: LossInputs) -> torch.Tensor:
    """APO-down (chosen worse than the model's outputs): σ(βc) + (1 − σ(βΔ))."""
    return torch.sigmoid(inputs.beta * inputs.chosen_logratios) + (1.0 - torch.sigmoid(inputs.beta * inputs.logits))


def discopop(inputs: LossInputs) -> torch.Tensor:
    """DiscoPOP: a logistic/exponential blend, mixed by σ(βΔ/τ) with τ = `discopop_tau`."""
    x = inputs.beta * inputs.logits
    tau = inputs.params["discopop_tau"]
    mix = torch.sigmoid(x / tau)
    # exp(−x)·σ(x/τ) computed as exp(−x + log σ(x/τ)): the same value, but finite for very negative margins, where
    # exp(−x) overflows while σ(x/τ) underflows to 0 (inf·0 = NaN).
    return -F.logsigmoid(x) * (1.0 - mix) + torch.exp(-x + F.logsigmoid(x / tau))


def sigmoid_norm(inputs: LossInputs) -> torch.Tensor:
    """Length-normalised DPO: −log σ(β·(c/|y_w| − r/|y_l|))."""
    chosen_length, rejected_length = _lengths(inputs)
    return -F.logsigmoid(
        inputs.beta * (inputs.chosen_logratios / chosen_length - inputs.rejected_logratios / rejected_length)
    )


def sft(inputs: LossInputs) -> torch.Tensor:
    """Negative log-likelihood of the chosen responses, averaged over all their tokens in the batch (the RPO term
    when combined with a preference loss); the same value for every pair."""
    chosen_length, _ = _lengths(inputs)
    # A likelihood: every token at full weight, also when `ld_alpha` desensitises the preference losses (as TRL).
    nll = -inputs.chosen_likelihood_logps.sum() / chosen_length.sum()
    return nll.expand_as(inputs.policy_chosen_logps)


def simpo(inputs: LossInputs) -> torch.Tensor:
    """SimPO (reference-free): −log σ(β·(log π(y_w)/|y_w| − log π(y_l)/|y_l|) − γ), γ = `simpo_gamma`;
    with ε > 0 smoothed like cDPO."""
    chosen_length, rejected_length = _lengths(inputs)
    x = inputs.beta * (
        inputs.policy_chosen_logps / chosen_length - inputs.policy_rejected_logps / rejected_length
    ) - inputs.params["simpo_gamma"]
    return _smoothed_logistic(x, inputs.label_smoothing)
