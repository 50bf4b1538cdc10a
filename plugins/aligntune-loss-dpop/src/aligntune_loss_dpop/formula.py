"""DPOP: −log σ(β·(Δ − λ·max(0, log π_ref(y_w|x) − log π(y_w|x)))).

Plain DPO can raise the chosen-vs-rejected margin while *lowering* the chosen response's own likelihood; DPOP adds
a penalty, weighted by λ (`dpop_lambda`), whenever the policy's chosen log-prob drops below the reference's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from aligntune.losses import LossInputs


def dpop(inputs: LossInputs) -> torch.Tensor:
    penalty = torch.clamp(inputs.ref_chosen_logps - inputs.policy_chosen_logps, min=0.0)
    return -F.logsigmoid(inputs.beta * (inputs.logits - inputs.params["dpop_lambda"] * penalty))
