"""Built-in losses, registered through the plugin manager like any third-party loss.

This module stays light: the formulas (and torch) are imported when a loss is first computed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from aligntune.plugins.hookspecs import hookimpl
from aligntune.plugins.records import LossSpec, lazy

_FORMULAS = "aligntune.losses.formulas"


def _needs_smoothing(beta: float, label_smoothing: float, params: dict[str, Any]) -> None:
    if label_smoothing <= 0:
        raise ValueError("needs label_smoothing > 0 (the EXO paper recommends 1e-3)")


def _positive_tau(beta: float, label_smoothing: float, params: dict[str, Any]) -> None:
    tau = params["discopop_tau"]
    if not isinstance(tau, (int, float)) or isinstance(tau, bool) or tau <= 0:
        raise ValueError(f"discopop_tau must be a number > 0, got {tau!r}")


def _gamma_number(beta: float, label_smoothing: float, params: dict[str, Any]) -> None:
    gamma = params["simpo_gamma"]
    if not isinstance(gamma, (int, float)) or isinstance(gamma, bool) or gamma < 0:
        raise ValueError(f"simpo_gamma (the target reward margin) must be a number >= 0, got {gamma!r}")


# name, summary, extra fields
_LOSSES: list[tuple[str, str, dict[str, Any]]] = [
    ("sigmoid", "DPO logistic loss; label_smoothing > 0 gives conservative DPO (cDPO)", {}),
    ("hinge", "SLiC hinge loss max(0, 1 - beta*delta)", {}),
    ("ipo", "IPO squared loss on length-normalised log-ratios (TRL 1.x form)", {"needs_lengths": True}),
    ("exo_pair", "EXO pairwise: reverse KL to the smoothed preference labels", {"validate": _needs_smoothing}),
    ("nca_pair", "NCA pairwise: absolute likelihood of chosen, contrast with rejected", {}),
    ("robust", "Robust DPO, unbiased under label noise label_smoothing", {}),
    ("bco_pair", "BCO pairwise: chosen up, rejected down, each against zero", {}),
    ("sppo_hard", "SPPO with hard win/loss probabilities", {}),
    ("aot", "AOT paired: distributional alignment via sorted log-ratio gaps", {}),
    ("aot_unpaired", "AOT unpaired: sorted chosen vs sorted rejected log-ratios", {}),
    ("apo_zero", "APO-zero: chosen outputs better than the model's", {}),
    ("apo_down", "APO-down: chosen outputs worse than the model's", {}),
    ("discopop", "DiscoPOP: logistic/exponential blend (discopop_tau)",
     {"params": {"discopop_tau": 0.05}, "validate": _positive_tau}),
    ("sigmoid_norm", "DPO on length-normalised log-ratios", {"needs_lengths": True}),
    ("sft", "NLL of the chosen responses (combine with a preference loss: RPO)",
     {"needs_lengths": True, "requires_reference": False}),
    ("simpo", "SimPO: reference-free, length-normalised, target margin simpo_gamma",
     {"needs_lengths": True, "requires_reference": False, "params": {"simpo_gamma": 0.5},
      "validate": _gamma_number}),
]


@hookimpl
def aligntune_losses() -> Iterator[LossSpec]:
    for name, summary, extra in _LOSSES:
        yield LossSpec(name=name, summary=summary, fn=lazy(f"{_FORMULAS}:{name}"), **extra)
