"""Helpers for plugin authors' tests (and ours): contract checks that any loss plugin must pass.

    from aligntune.testing import check_loss_contract
    def test_my_loss():
        check_loss_contract("my-loss", params={"margin": 1.0})
"""

from __future__ import annotations

from typing import Any


def _cases(torch):
    generator = torch.Generator().manual_seed(0)

    def rand(n, scale):
        return -scale * torch.rand(n, generator=generator, dtype=torch.float64)

    ordinary = dict(policy_chosen=rand(7, 40.0), policy_rejected=rand(7, 40.0), ref_chosen=rand(7, 40.0),
                    ref_rejected=rand(7, 40.0), chosen_lengths=torch.randint(1, 30, (7,), generator=generator),
                    rejected_lengths=torch.randint(1, 30, (7,), generator=generator))
    single = {key: value[:1] for key, value in ordinary.items()}
    huge = dict(policy_chosen=torch.tensor([-1.0, -1e4, -5.0], dtype=torch.float64),
                policy_rejected=torch.tensor([-1e4, -1.0, -5.0], dtype=torch.float64),
                ref_chosen=torch.tensor([-1e4, -1.0, -5.0], dtype=torch.float64),
                ref_rejected=torch.tensor([-1.0, -1e4, -5.0], dtype=torch.float64),
                chosen_lengths=torch.tensor([0, 3, 1]), rejected_lengths=torch.tensor([5, 0, 1]))
    return {"ordinary": ordinary, "single pair": single, "huge margins, zero lengths": huge}


def check_loss_contract(
    name: str | list[str],
    *,
    params: dict[str, Any] | None = None,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
    weights: list[float] | None = None,
) -> None:
    """Assert the loss contract for the loss `name` (as installed): for ordinary inputs, a single pair, and huge
    margins with zero lengths, with and without a reference, it returns one finite value per pair, its gradient
    reaches the policy log-probs and is finite, the rewards are β·(policy − reference), and it is deterministic.

    Raises AssertionError saying which case and property failed.
    """
    import torch

    from aligntune.losses import compute_loss

    for case, values in _cases(torch).items():
        for reference in (True, False):
            where = f"loss {name!r}, {case}, {'with' if reference else 'without'} a reference"
            chosen = values["policy_chosen"].clone().requires_grad_(True)
            rejected = values["policy_rejected"].clone().requires_grad_(True)
            kwargs = dict(
                policy_chosen_logps=chosen,
                policy_rejected_logps=rejected,
                ref_chosen_logps=values["ref_chosen"] if reference else None,
                ref_rejected_logps=values["ref_rejected"] if reference else None,
                beta=beta,
                label_smoothing=label_smoothing,
                chosen_lengths=values["chosen_lengths"],
                rejected_lengths=values["rejected_lengths"],
                weights=weights,
                **(params or {}),
            )
            out = compute_loss(name, **kwargs)
            n = chosen.shape[0]
            assert out.losses.shape == (n,), f"{where}: losses have shape {tuple(out.losses.shape)}, expected ({n},)"
            assert torch.isfinite(out.losses).all(), f"{where}: non-finite losses {out.losses.tolist()}"
            expected_chosen = beta * (chosen.detach() - (values["ref_chosen"] if reference else 0.0))
            assert torch.allclose(out.chosen_rewards, expected_chosen), f"{where}: chosen_rewards are not β·(π − ref)"
            assert out.chosen_rewards.shape == out.rejected_rewards.shape == (n,), f"{where}: reward shapes"
            out.losses.mean().backward()
            grads = [g for g in (chosen.grad, rejected.grad) if g is not None]
            assert grads, f"{where}: no gradient reaches the policy log-probs"
            assert all(torch.isfinite(g).all() for g in grads), f"{where}: non-finite gradients"
            again = compute_loss(name, **{**kwargs, "policy_chosen_logps": chosen.detach(),
                                          "policy_rejected_logps": rejected.detach()})
            assert torch.equal(again.losses, out.losses.detach()), f"{where}: not deterministic"
        if case == "ordinary":
            probe = values["policy_chosen"].clone().requires_grad_(True)
            out = compute_loss(name, policy_chosen_logps=probe, policy_rejected_logps=values["policy_rejected"],
                               ref_chosen_logps=values["ref_chosen"], ref_rejected_logps=values["ref_rejected"],
                               beta=beta, label_smoothing=label_smoothing, chosen_lengths=values["chosen_lengths"],
                               rejected_lengths=values["rejected_lengths"], weights=weights, **(params or {}))
            out.losses.mean().backward()
            assert probe.grad.abs().sum() > 0, f"loss {name!r}: the chosen log-probs get no gradient"
