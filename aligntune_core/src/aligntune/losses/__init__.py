"""The DPO loss library: the public loss contract and the built-in losses.

    from aligntune.losses import compute_loss
    out = compute_loss("sigmoid", policy_chosen_logps=..., policy_rejected_logps=..., ref_chosen_logps=...,
                       ref_rejected_logps=..., beta=0.1)
    out.losses, out.chosen_rewards, out.rejected_rewards  # one value per pair
"""

from aligntune.losses.contract import LossInputs, LossOutput, compute_loss, loss_requires_reference, validate_loss

__all__ = ["LossInputs", "LossOutput", "compute_loss", "loss_requires_reference", "validate_loss"]
