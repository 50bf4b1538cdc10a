"""The loss contract shared by the core, every backend and third-party loss plugins."""

from __future__ import annotations

from typing import Any

import attrs
import torch

from aligntune.errors import ConfigError, did_you_mean


@attrs.frozen
class LossInputs:
    """Per-pair sequence log-probabilities (summed over completion tokens) and the loss settings.

    Reference log-probs are zeros when training reference-free. Tensors have shape `(num_pairs,)`.
    """

    policy_chosen_logps: torch.Tensor
    policy_rejected_logps: torch.Tensor
    ref_chosen_logps: torch.Tensor
    ref_rejected_logps: torch.Tensor
    beta: float
    label_smoothing: float = 0.0
    chosen_lengths: torch.Tensor | None = None
    rejected_lengths: torch.Tensor | None = None
    params: dict[str, Any] = attrs.field(factory=dict)
    reference_free: bool = False

    @property
    def chosen_logratios(self) -> torch.Tensor:
        """log π(y_w|x) − log π_ref(y_w|x)."""
        return self.policy_chosen_logps - self.ref_chosen_logps

    @property
    def rejected_logratios(self) -> torch.Tensor:
        """log π(y_l|x) − log π_ref(y_l|x)."""
        return self.policy_rejected_logps - self.ref_rejected_logps

    @property
    def logits(self) -> torch.Tensor:
        """Δ = chosen log-ratio − rejected log-ratio (the DPO "logits", before β)."""
        return self.chosen_logratios - self.rejected_logratios


@attrs.frozen
class LossOutput:
    """Per-pair losses and implicit rewards β·(log π − log π_ref) for chosen and rejected."""

    losses: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor


def validate_loss(name: str, *, beta: float, label_smoothing: float = 0.0, params: dict[str, Any] | None = None):
    """Check a loss name and its settings; returns the loss record with the parameters filled in with defaults.

    Raises `ConfigError` naming the offending setting.
    """
    from aligntune.plugins import get_loss

    spec = get_loss(name)
    if not isinstance(beta, (int, float)) or isinstance(beta, bool) or not beta > 0:
        raise ConfigError(f"beta must be a number > 0, got {beta!r}")
    if not isinstance(label_smoothing, (int, float)) or not 0.0 <= label_smoothing < 0.5:
        raise ConfigError(
            f"label_smoothing must be in [0, 0.5) (the assumed probability that a pair's preference is flipped), "
            f"got {label_smoothing!r}"
        )
    given = dict(params or {})
    unknown = sorted(set(given) - set(spec.params))
    if unknown:
        valid = ", ".join(sorted(spec.params)) or "none"
        hint = did_you_mean(unknown[0], spec.params)
        raise ConfigError(f"loss {name!r} has no parameter {unknown[0]!r}.{hint} Its parameters: {valid}.")
    resolved = {**spec.params, **given}
    if spec.validate is not None:
        try:
            spec.validate(float(beta), float(label_smoothing), resolved)
        except ValueError as exc:
            raise ConfigError(f"loss {name!r}: {exc}") from exc
    return spec, resolved


def loss_requires_reference(name: str) -> bool:
    from aligntune.plugins import get_loss

    return get_loss(name).requires_reference


def _as_tensor(value: torch.Tensor, like: torch.Tensor, what: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        value = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if value.shape != like.shape:
        raise ValueError(f"{what} has shape {tuple(value.shape)}, expected {tuple(like.shape)} (one value per pair)")
    return value


def compute_loss(
    name: str,
    *,
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor | None,
    ref_rejected_logps: torch.Tensor | None,
    beta: float,
    label_smoothing: float = 0.0,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
    **params: Any,
) -> LossOutput:
    """Per-pair losses of the loss called `name` (a built-in or a plugin's).

    Reference log-probs may be `None` (reference-free training): they are treated as zero.
    """
    spec, resolved = validate_loss(name, beta=beta, label_smoothing=label_smoothing, params=params)
    chosen = policy_chosen_logps
    if not isinstance(chosen, torch.Tensor) or chosen.dim() != 1:
        raise ValueError("policy_chosen_logps must be a 1-D tensor with one summed log-prob per pair")
    rejected = _as_tensor(policy_rejected_logps, chosen, "policy_rejected_logps")
    reference_free = ref_chosen_logps is None and ref_rejected_logps is None
    if (ref_chosen_logps is None) != (ref_rejected_logps is None):
        raise ValueError("pass both ref_chosen_logps and ref_rejected_logps, or neither (reference-free)")
    if reference_free:
        ref_chosen = torch.zeros_like(chosen)
        ref_rejected = torch.zeros_like(chosen)
    else:
        ref_chosen = _as_tensor(ref_chosen_logps, chosen, "ref_chosen_logps").to(chosen.dtype)
        ref_rejected = _as_tensor(ref_rejected_logps, chosen, "ref_rejected_logps").to(chosen.dtype)
    if spec.needs_lengths and (chosen_lengths is None or rejected_lengths is None):
        raise ValueError(f"loss {name!r} needs chosen_lengths and rejected_lengths (completion token counts)")
    if chosen_lengths is not None:
        chosen_lengths = _as_tensor(chosen_lengths, chosen, "chosen_lengths")
    if rejected_lengths is not None:
        rejected_lengths = _as_tensor(rejected_lengths, chosen, "rejected_lengths")
    inputs = LossInputs(
        policy_chosen_logps=chosen,
        policy_rejected_logps=rejected,
        ref_chosen_logps=ref_chosen,
        ref_rejected_logps=ref_rejected,
        beta=float(beta),
        label_smoothing=float(label_smoothing),
        chosen_lengths=chosen_lengths,
        rejected_lengths=rejected_lengths,
        params=resolved,
        reference_free=reference_free,
    )
    losses = spec.fn(inputs)
    if not isinstance(losses, torch.Tensor) or losses.shape != chosen.shape:
        got = tuple(losses.shape) if isinstance(losses, torch.Tensor) else type(losses).__name__
        raise ValueError(f"loss {name!r} returned {got}; a loss must return one value per pair {tuple(chosen.shape)}")
    return LossOutput(
        losses=losses,
        chosen_rewards=inputs.beta * inputs.chosen_logratios.detach(),
        rejected_rewards=inputs.beta * inputs.rejected_logratios.detach(),
    )
