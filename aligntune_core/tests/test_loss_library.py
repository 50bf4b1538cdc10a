"""Every built-in loss against a hand computation (plain Python math) on fixed log-probs, edge values included,
and the contract check from `aligntune.testing` that plugin authors use too."""

from __future__ import annotations

import math

import pytest
import torch

from aligntune.errors import ConfigError
from aligntune.losses import compute_loss, resolve_loss
from aligntune.testing import check_loss_contract

PC = [-10.0, -4.0, -7.5, -30.0, -1.0]
PR = [-12.0, -3.0, -7.5, -2.0, -900.0]
RC = [-11.0, -4.5, -7.0, -25.0, -700.0]
RR = [-11.5, -3.5, -8.0, -3.0, -2.0]
LC = [5, 2, 3, 40, 0]  # a zero length is clamped to 1
LR = [6, 1, 3, 2, 9]
B = 0.5
EPS = 0.2


def ls(x):  # log σ(x), stable
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def sig(x):
    return math.exp(ls(x))


def c(i):
    return PC[i] - RC[i]


def r(i):
    return PR[i] - RR[i]


def d(i):
    return c(i) - r(i)


def smoothed(x, eps):
    return -(1 - eps) * ls(x) - eps * ls(-x)


def length(v):
    return max(v, 1)


N = range(len(PC))
gaps_policy = sorted(PC[i] - PR[i] for i in N)
gaps_ref = sorted(RC[i] - RR[i] for i in N)
sorted_c = sorted(c(i) for i in N)
sorted_r = sorted(r(i) for i in N)
TAU = 0.05
GAMMA = 0.7

HAND = {
    "sigmoid": (EPS, {}, lambda i: smoothed(B * d(i), EPS)),
    "hinge": (0.0, {}, lambda i: max(0.0, 1 - B * d(i))),
    "ipo": (0.0, {}, lambda i: (c(i) / length(LC[i]) - r(i) / length(LR[i]) - 1 / (2 * B)) ** 2),
    "exo_pair": (EPS, {}, lambda i: sig(B * d(i)) * (ls(B * d(i)) - math.log(1 - EPS))
                 + sig(-B * d(i)) * (ls(-B * d(i)) - math.log(EPS))),
    "nca_pair": (0.0, {}, lambda i: -ls(B * c(i)) - 0.5 * ls(-B * c(i)) - 0.5 * ls(-B * r(i))),
    "robust": (EPS, {}, lambda i: (-(1 - EPS) * ls(B * d(i)) + EPS * ls(-B * d(i))) / (1 - 2 * EPS)),
    "bco_pair": (0.0, {}, lambda i: -ls(B * c(i)) - ls(-B * r(i))),
    "sppo_hard": (0.0, {}, lambda i: (c(i) - 0.5 / B) ** 2 + (r(i) + 0.5 / B) ** 2),
    "aot": (EPS, {}, lambda i: smoothed(B * (gaps_policy[i] - gaps_ref[i]), EPS)),
    "aot_unpaired": (EPS, {}, lambda i: smoothed(B * (sorted_c[i] - sorted_r[i]), EPS)),
    "apo_zero": (0.0, {}, lambda i: (1 - sig(B * c(i))) + sig(B * r(i))),
    "apo_down": (0.0, {}, lambda i: sig(B * c(i)) + (1 - sig(B * d(i)))),
    "discopop": (0.0, {"discopop_tau": TAU}, lambda i: -ls(B * d(i)) * (1 - sig(B * d(i) / TAU))
                 + math.exp(-B * d(i) + ls(B * d(i) / TAU))),
    "sigmoid_norm": (0.0, {}, lambda i: -ls(B * (c(i) / length(LC[i]) - r(i) / length(LR[i])))),
    "sft": (0.0, {}, lambda i: -sum(PC) / sum(length(v) for v in LC)),
    "simpo": (EPS, {"simpo_gamma": GAMMA},
              lambda i: smoothed(B * (PC[i] / length(LC[i]) - PR[i] / length(LR[i])) - GAMMA, EPS)),
}


def _compute(name, eps, params, reference=True, weights=None):
    return compute_loss(
        name,
        policy_chosen_logps=torch.tensor(PC, dtype=torch.float64),
        policy_rejected_logps=torch.tensor(PR, dtype=torch.float64),
        ref_chosen_logps=torch.tensor(RC, dtype=torch.float64) if reference else None,
        ref_rejected_logps=torch.tensor(RR, dtype=torch.float64) if reference else None,
        beta=B,
        label_smoothing=eps,
        chosen_lengths=torch.tensor(LC),
        rejected_lengths=torch.tensor(LR),
        weights=weights,
        **params,
    )


@pytest.mark.parametrize("name", sorted(HAND))
def test_each_loss_matches_its_hand_computation(name):
    eps, params, expected = HAND[name]
    out = _compute(name, eps, params)
    assert out.losses.tolist() == pytest.approx([expected(i) for i in N], rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("name", sorted(HAND))
def test_each_loss_passes_the_plugin_contract(name):
    eps, params, _ = HAND[name]
    check_loss_contract(name, params=params, beta=0.1, label_smoothing=eps or (1e-3 if name == "exo_pair" else 0.0))


def test_simpo_ignores_the_reference_and_needs_none():
    eps, params, _ = HAND["simpo"]
    with_reference = _compute("simpo", eps, params)
    without = _compute("simpo", eps, params, reference=False)
    assert with_reference.losses.tolist() == without.losses.tolist()
    assert resolve_loss("simpo", beta=B).requires_reference is False
    assert resolve_loss(["sigmoid", "sft"], beta=B).requires_reference is True


def test_weighted_combination_is_the_weighted_sum():
    out = _compute(["sigmoid", "sft"], 0.0, {}, weights=[1.0, 0.5])
    sigmoid = [smoothed(B * d(i), 0.0) for i in N]
    nll = -sum(PC) / sum(length(v) for v in LC)
    assert out.losses.tolist() == pytest.approx([s + 0.5 * nll for s in sigmoid], rel=1e-9)
    assert set(out.components) == {"sigmoid", "sft"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(name="exo_pair"), r"loss 'exo_pair': needs label_smoothing > 0"),
        (dict(name="discopop", discopop_tau=0), "discopop_tau must be a number > 0"),
        (dict(name="simpo", simpo_gamma=-1), "simpo_gamma .* must be a number >= 0"),
        (dict(name="simpo", discopop_tau=1), "has no parameter 'discopop_tau'.* Its parameters: simpo_gamma"),
        (dict(name=["sigmoid", "sft"], weights=[1.0]), "loss_weights has 1 values for 2 losses"),
        (dict(name=["sigmoid", "sigmoid"]), "lists a loss twice"),
        (dict(name=["sigmoid", "sft"], weights=[0, 0]), "not all zero"),
    ],
)
def test_loss_specific_settings_are_validated(kwargs, message):
    name = kwargs.pop("name")
    weights = kwargs.pop("weights", None)
    with pytest.raises(ConfigError, match=message):
        resolve_loss(name, beta=0.1, params=kwargs, weights=weights)
