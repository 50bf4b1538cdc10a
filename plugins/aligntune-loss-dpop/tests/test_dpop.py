"""The example loss plugin: a hand computation, the plugin contract, the listing."""

from __future__ import annotations

import math

import pytest
import torch

from aligntune.errors import ConfigError
from aligntune.losses import compute_loss
from aligntune.testing import check_loss_contract


def _log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def test_dpop_matches_a_hand_computation():
    policy_chosen, policy_rejected = [-10.0, -3.0, -8.0], [-12.0, -2.0, -9.0]
    ref_chosen, ref_rejected = [-11.0, -2.5, -8.0], [-11.0, -2.0, -7.0]
    beta, strength = 0.2, 5.0
    out = compute_loss("dpop", policy_chosen_logps=torch.tensor(policy_chosen, dtype=torch.float64),
                       policy_rejected_logps=torch.tensor(policy_rejected, dtype=torch.float64),
                       ref_chosen_logps=torch.tensor(ref_chosen, dtype=torch.float64),
                       ref_rejected_logps=torch.tensor(ref_rejected, dtype=torch.float64), beta=beta,
                       dpop_lambda=strength)
    expected = []
    for pc, pr, rc, rr in zip(policy_chosen, policy_rejected, ref_chosen, ref_rejected):
        delta = (pc - rc) - (pr - rr)
        penalty = max(0.0, rc - pc)
        expected.append(-_log_sigmoid(beta * (delta - strength * penalty)))
    assert out.losses.tolist() == pytest.approx(expected, rel=1e-12)
    # Pair 1 lowered the chosen log-prob below the reference: DPOP's loss is higher than DPO's there.
    dpo = compute_loss("sigmoid", policy_chosen_logps=torch.tensor(policy_chosen), policy_rejected_logps=torch.tensor(
        policy_rejected), ref_chosen_logps=torch.tensor(ref_chosen), ref_rejected_logps=torch.tensor(ref_rejected),
        beta=beta)
    assert out.losses[1] > dpo.losses[1] and out.losses[0] == pytest.approx(dpo.losses[0].item())


def test_dpop_passes_the_loss_contract():
    check_loss_contract("dpop", params={"dpop_lambda": 50.0})


def test_dpop_validates_its_parameter():
    with pytest.raises(ConfigError, match="dpop_lambda .* must be a number >= 0"):
        compute_loss("dpop", policy_chosen_logps=torch.zeros(2), policy_rejected_logps=torch.zeros(2),
                     ref_chosen_logps=None, ref_rejected_logps=None, beta=0.1, dpop_lambda=-1)


def test_listed_as_a_plugin():
    from aligntune import plugins

    plugins.reset_registry()
    listed = {p.name: p for p in plugins.list_plugins()}
    assert listed["aligntune-loss-dpop"].provides["losses"] == ["dpop"]
    assert listed["aligntune-loss-dpop"].status == "ok"
