"""The loss contract shared by the core, every backend and third-party loss plugins."""

from __future__ import annotations

from collections.abc import Sequence
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
    # The chosen log-probs with every completion token at full weight, where `policy_chosen_logps` is
    # length-desensitised (`ld_alpha`); a likelihood loss (sft) reads `chosen_likelihood_logps`. None: the same.
    policy_chosen_plain_logps: torch.Tensor | None = None

    @property
    def chosen_likelihood_logps(self) -> torch.Tensor:
        """log π(y_w|x) as a likelihood: every completion token at full weight, whatever `ld_alpha` does."""
        if self.policy_chosen_plain_logps is None:
            return self.policy_chosen_logps
        return self.policy_chosen_plain_logps

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
    components: dict[str, torch.Tensor] = attrs.field(factory=dict)  # per-loss values of a weighted sum


@attrs.frozen
class ResolvedLoss:
    """One loss or a weighted sum of losses, checked against the installed plugins and the settings."""

    names: tuple[str, ...]
    weights: tuple[float, ...]
    specs: tuple[Any, ...]
    params: tuple[dict[str, Any], ...]
    beta: float
    label_smoothing: float

    @property
    def requires_reference(self) -> bool:
        return any(spec.requires_reference for spec in self.specs)

    @property
    def needs_lengths(self) -> bool:
        return any(spec.needs_lengths for spec in self.specs)

    def compute(
        self,
        *,
        policy_chosen_logps: torch.Tensor,
        policy_rejected_logps: torch.Tensor,
        ref_chosen_logps: torch.Tensor | None,
        ref_rejected_logps: torch.Tensor | None,
        chosen_lengths: torch.Tensor | None = None,
        rejected_lengths: torch.Tensor | None = None,
        pair_weights: torch.Tensor | None = None,
        policy_chosen_plain_logps: torch.Tensor | None = None,
    ) -> LossOutput:
        """Per-pair Σ wᵢ·lossᵢ (each loss's per-pair values; `components` keeps them apart). `pair_weights` (e.g.
        WPO's, `aligntune.modeling.pair_weights`) multiply every loss's per-pair values, as TRL's `use_weighting`
        does; `policy_chosen_plain_logps`: see `LossInputs`."""
        base = _loss_inputs(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
                            chosen_lengths, rejected_lengths, beta=self.beta, label_smoothing=self.label_smoothing)
        if policy_chosen_plain_logps is not None:
            base = attrs.evolve(base, policy_chosen_plain_logps=_as_tensor(
                policy_chosen_plain_logps, base.policy_chosen_logps, "policy_chosen_plain_logps"))
        if pair_weights is not None:
            pair_weights = _as_tensor(pair_weights, base.policy_chosen_logps, "pair_weights").detach()
        if self.needs_lengths and (base.chosen_lengths is None or base.rejected_lengths is None):
            needing = [n for n, s in zip(self.names, self.specs) if s.needs_lengths]
            raise ValueError(f"loss {needing[0]!r} needs chosen_lengths and rejected_lengths (completion token counts)")
        total = None
        components: dict[str, torch.Tensor] = {}
        for name, weight, spec, params in zip(self.names, self.weights, self.specs, self.params):
            losses = spec.fn(attrs.evolve(base, params=params))
            if not isinstance(losses, torch.Tensor) or losses.shape != base.policy_chosen_logps.shape:
                got = tuple(losses.shape) if isinstance(losses, torch.Tensor) else type(losses).__name__
                raise ValueError(
                    f"loss {name!r} returned {got}; a loss must return one value per pair "
                    f"{tuple(base.policy_chosen_logps.shape)}"
                )
            if pair_weights is not None:
                # A batch-level loss (sft) is the same value for every pair: weighting it per pair averages to
                # loss x mean weight (TRL 1.16 raises there: it multiplies the expanded value in place).
                losses = losses * pair_weights
            components[name] = losses
            total = weight * losses if total is None else total + weight * losses
        return LossOutput(
            losses=total,
            chosen_rewards=base.beta * base.chosen_logratios.detach(),
            rejected_rewards=base.beta * base.rejected_logratios.detach(),
            components=components,
        )


def _check_settings(beta: Any, label_smoothing: Any) -> None:
    if not isinstance(beta, (int, float)) or isinstance(beta, bool) or not beta > 0:
        raise ConfigError(f"beta must be a number > 0, got {beta!r}")
    if not isinstance(label_smoothing, (int, float)) or isinstance(label_smoothing, bool) or not (
        0.0 <= label_smoothing < 0.5
    ):
        raise ConfigError(
            f"label_smoothing must be in [0, 0.5) (the assumed probability that a pair's preference is flipped), "
            f"got {label_smoothing!r}"
        )


def resolve_loss(
    loss_type: str | Sequence[str],
    *,
    beta: float,
    label_smoothing: float = 0.0,
    params: dict[str, Any] | None = None,
    weights: Sequence[float] | None = None,
) -> ResolvedLoss:
    """Check loss names, weights and parameters; raises `ConfigError` (or `UnknownPluginError`) naming the problem.

    `params` go to the losses that declare them; a parameter no chosen loss declares is an error.
    """
    from aligntune.plugins import get_loss

    _check_settings(beta, label_smoothing)
    names = (loss_type,) if isinstance(loss_type, str) else tuple(loss_type)
    if not names or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"loss_type must be a loss name or a non-empty list of names, got {loss_type!r}")
    if len(set(names)) != len(names):
        raise ConfigError(f"loss_type lists a loss twice: {list(names)}; give each once with its weight")
    if weights is None:
        weights = (1.0,) * len(names)
    weights = tuple(weights)
    if len(weights) != len(names):
        raise ConfigError(f"loss_weights has {len(weights)} values for {len(names)} losses ({list(names)})")
    if not all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in weights) or not any(weights):
        raise ConfigError(f"loss_weights must be numbers >= 0, not all zero, got {list(weights)}")
    specs = tuple(get_loss(name) for name in names)
    given = dict(params or {})
    declared = {key for spec in specs for key in spec.params}
    unknown = sorted(set(given) - declared)
    if unknown:
        valid = ", ".join(sorted(declared)) or "none"
        hint = did_you_mean(unknown[0], declared)
        raise ConfigError(
            f"loss {' + '.join(names)!r} has no parameter {unknown[0]!r}.{hint} Its parameters: {valid}."
        )
    resolved_params = []
    for name, spec in zip(names, specs):
        own = {**spec.params, **{k: v for k, v in given.items() if k in spec.params}}
        if spec.validate is not None:
            try:
                spec.validate(float(beta), float(label_smoothing), own)
            except ValueError as exc:
                raise ConfigError(f"loss {name!r}: {exc}") from None
        resolved_params.append(own)
    return ResolvedLoss(names=names, weights=tuple(float(w) for w in weights), specs=specs,
                        params=tuple(resolved_params), beta=float(beta), label_smoothing=float(label_smoothing))


def _as_tensor(value: torch.Tensor, like: torch.Tensor, what: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        value = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if value.shape != like.shape:
        raise ValueError(f"{what} has shape {tuple(value.shape)}, expected {tuple(like.shape)} (one value per pair)")
    return value


def _loss_inputs(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, chosen_lengths,
                 rejected_lengths, *, beta: float, label_smoothing: float) -> LossInputs:
    chosen = policy_chosen_logps
    if not isinstance(chosen, torch.Tensor) or chosen.dim() != 1:
        raise ValueError("policy_chosen_logps must be a 1-D tensor with one summed log-prob per pair")
    rejected = _as_tensor(policy_rejected_logps, chosen, "policy_rejected_logps")
    if (ref_chosen_logps is None) != (ref_rejected_logps is None):
        raise ValueError("pass both ref_chosen_logps and ref_rejected_logps, or neither (reference-free)")
    reference_free = ref_chosen_logps is None
    if reference_free:
        ref_chosen = torch.zeros_like(chosen)
        ref_rejected = torch.zeros_like(chosen)
    else:
        ref_chosen = _as_tensor(ref_chosen_logps, chosen, "ref_chosen_logps").to(chosen.dtype)
        ref_rejected = _as_tensor(ref_rejected_logps, chosen, "ref_rejected_logps").to(chosen.dtype)
    if chosen_lengths is not None:
        chosen_lengths = _as_tensor(chosen_lengths, chosen, "chosen_lengths")
    if rejected_lengths is not None:
        rejected_lengths = _as_tensor(rejected_lengths, chosen, "rejected_lengths")
    return LossInputs(
        policy_chosen_logps=chosen,
        policy_rejected_logps=rejected,
        ref_chosen_logps=ref_chosen,
        ref_rejected_logps=ref_rejected,
        beta=float(beta),
        label_smoothing=float(label_smoothing),
        chosen_lengths=chosen_lengths,
        rejected_lengths=rejected_lengths,
        reference_free=reference_free,
    )


def compute_loss(
    name: str | Sequence[str],
    *,
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor | None,
    ref_rejected_logps: torch.Tensor | None,
    beta: float,
    label_smoothing: float = 0.0,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
    weights: Sequence[float] | None = None,
    **params: Any,
) -> LossOutput:
    """Per-pair losses of the loss called `name` (a built-in or a plugin's), or of a weighted sum of losses
    (`name=["sigmoid", "sft"], weights=[1.0, 0.5]`).

    Reference log-probs may be `None` (reference-free training): they are treated as zero.
    """
    resolved = resolve_loss(name, beta=beta, label_smoothing=label_smoothing, params=params, weights=weights)
    return resolved.compute(
        policy_chosen_logps=policy_chosen_logps,
        policy_rejected_logps=policy_rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
        chosen_lengths=chosen_lengths,
        rejected_lengths=rejected_lengths,
    )
