"""Each built-in loss against a hand computation on fixed log-probs (plain Python math, not torch)."""

from __future__ import annotations

import math

import pytest
import torch

from aligntune.errors import ConfigError
from aligntune.losses import compute_loss

POLICY_CHOSEN = [-10.0, -4.0, -7.5, -30.0]
POLICY_REJECTED = [-12.0, -3.0, -7.5, -2.0]
REF_CHOSEN = [-11.0, -4.5, -7.0, -25.0]
REF_REJECTED = [-11.5, -3.5, -8.0, -3.0]
CHOSEN_LENGTHS = [5, 2, 3, 40]
REJECTED_LENGTHS = [6, 1, 3, 2]


def _log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def _delta(i: int, reference: bool = True) -> float:
    ref_c = REF_CHOSEN[i] if reference else 0.0
    ref_r = REF_REJECTED[i] if reference else 0.0
    return (POLICY_CHOSEN[i] - ref_c) - (POLICY_REJECTED[i] - ref_r)


def _run(name: str, beta: float, label_smoothing: float = 0.0, reference: bool = True, **params):
    return compute_loss(
        name,
        policy_chosen_logps=torch.tensor(POLICY_CHOSEN, dtype=torch.float64),
        policy_rejected_logps=torch.tensor(POLICY_REJECTED, dtype=torch.float64),
        ref_chosen_logps=torch.tensor(REF_CHOSEN, dtype=torch.float64) if reference else None,
        ref_rejected_logps=torch.tensor(REF_REJECTED, dtype=torch.float64) if reference else None,
        beta=beta,
        label_smoothing=label_smoothing,
        chosen_lengths=torch.tensor(CHOSEN_LENGTHS, dtype=torch.float64),
        rejected_lengths=torch.tensor(REJECTED_LENGTHS, dtype=torch.float64),
        **params,
    )


@pytest.mark.parametrize("beta", [0.1, 0.5, 2.0])
def test_sigmoid_is_minus_log_sigmoid_of_beta_delta(beta):
    out = _run("sigmoid", beta)
    expected = [-_log_sigmoid(beta * _delta(i)) for i in range(4)]
    assert out.losses.tolist() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_sigmoid_with_label_smoothing_is_conservative_dpo(eps):
    beta = 0.5
    out = _run("sigmoid", beta, label_smoothing=eps)
    expected = [
        -(1 - eps) * _log_sigmoid(beta * _delta(i)) - eps * _log_sigmoid(-beta * _delta(i)) for i in range(4)
    ]
    assert out.losses.tolist() == pytest.approx(expected, rel=1e-12)
    # Smoothing changes the loss (TRL 1.x ignores it for sigmoid; we do not).
    assert out.losses.tolist() != pytest.approx(_run("sigmoid", beta).losses.tolist())


def test_hinge_is_relu_of_one_minus_beta_delta():
    beta = 1.0
    out = _run("hinge", beta)
    expected = [max(0.0, 1 - beta * _delta(i)) for i in range(4)]
    assert out.losses.tolist() == pytest.approx(expected, rel=1e-12)
    assert expected[0] == 0.0  # the margin of pair 0 exceeds 1/β: no loss


def test_ipo_divides_each_log_ratio_by_its_length_then_squares():
    beta = 0.1
    out = _run("ipo", beta)
    expected = []
    for i in range(4):
        chosen = (POLICY_CHOSEN[i] - REF_CHOSEN[i]) / CHOSEN_LENGTHS[i]
        rejected = (POLICY_REJECTED[i] - REF_REJECTED[i]) / REJECTED_LENGTHS[i]
        expected.append((chosen - rejected - 1 / (2 * beta)) ** 2)
    assert out.losses.tolist() == pytest.approx(expected, rel=1e-12)


def test_ipo_without_lengths_is_a_clear_error():
    with pytest.raises(ValueError, match="ipo.*needs chosen_lengths and rejected_lengths"):
        compute_loss("ipo", policy_chosen_logps=torch.zeros(2), policy_rejected_logps=torch.zeros(2),
                     ref_chosen_logps=None, ref_rejected_logps=None, beta=0.1)


def test_rewards_are_beta_times_log_ratios():
    beta = 0.3
    out = _run("sigmoid", beta)
    assert out.chosen_rewards.tolist() == pytest.approx([beta * (POLICY_CHOSEN[i] - REF_CHOSEN[i]) for i in range(4)])
    assert out.rejected_rewards.tolist() == pytest.approx(
        [beta * (POLICY_REJECTED[i] - REF_REJECTED[i]) for i in range(4)]
    )


def test_reference_free_treats_reference_as_zero():
    beta = 0.2
    out = _run("sigmoid", beta, reference=False)
    expected = [-_log_sigmoid(beta * _delta(i, reference=False)) for i in range(4)]
    assert out.losses.tolist() == pytest.approx(expected, rel=1e-12)
    assert out.chosen_rewards.tolist() == pytest.approx([beta * v for v in POLICY_CHOSEN])


def test_huge_margins_stay_finite():
    big = torch.tensor([1e4, -1e4], dtype=torch.float32)
    for name in ("sigmoid", "hinge", "ipo"):
        out = compute_loss(name, policy_chosen_logps=big, policy_rejected_logps=-big, ref_chosen_logps=None,
                           ref_rejected_logps=None, beta=1.0, chosen_lengths=torch.tensor([0, 3]),
                           rejected_lengths=torch.tensor([0, 3]))
        assert torch.isfinite(out.losses).all(), name


def test_gradients_flow_to_policy_logps():
    chosen = torch.tensor(POLICY_CHOSEN, requires_grad=True)
    out = compute_loss("sigmoid", policy_chosen_logps=chosen, policy_rejected_logps=torch.tensor(POLICY_REJECTED),
                       ref_chosen_logps=torch.tensor(REF_CHOSEN), ref_rejected_logps=torch.tensor(REF_REJECTED),
                       beta=0.1)
    out.losses.sum().backward()
    # d/dx -log σ(β(x − c)) = −β σ(−βΔ)
    expected = [-0.1 * (1 - 1 / (1 + math.exp(-0.1 * _delta(i)))) for i in range(4)]
    assert chosen.grad.tolist() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"beta": 0.0}, "beta must be a number > 0"),
        ({"beta": -1.0}, "beta must be a number > 0"),
        ({"beta": 0.1, "label_smoothing": 0.5}, r"label_smoothing must be in \[0, 0.5\)"),
        ({"beta": 0.1, "label_smoothing": -0.1}, r"label_smoothing must be in \[0, 0.5\)"),
        ({"beta": 0.1, "margin": 1.0}, "loss 'sigmoid' has no parameter 'margin'"),
    ],
)
def test_bad_settings_are_clear_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        compute_loss("sigmoid", policy_chosen_logps=torch.zeros(2), policy_rejected_logps=torch.zeros(2),
                     ref_chosen_logps=None, ref_rejected_logps=None, **kwargs)


def test_mismatched_shapes_are_clear_errors():
    with pytest.raises(ValueError, match=r"policy_rejected_logps has shape \(3,\), expected \(2,\)"):
        compute_loss("sigmoid", policy_chosen_logps=torch.zeros(2), policy_rejected_logps=torch.zeros(3),
                     ref_chosen_logps=None, ref_rejected_logps=None, beta=0.1)
    with pytest.raises(ValueError, match="both ref_chosen_logps and ref_rejected_logps, or neither"):
        compute_loss("sigmoid", policy_chosen_logps=torch.zeros(2), policy_rejected_logps=torch.zeros(2),
                     ref_chosen_logps=torch.zeros(2), ref_rejected_logps=None, beta=0.1)
