"""What `precision: auto` trains in, decided from the device (TRL's own default sets bf16 without asking)."""

from __future__ import annotations

import attrs


@attrs.frozen
class ResolvedPrecision:
    mode: str  # "bf16", "fp16" or "fp32": the mixed-precision mode the trainer runs
    reason: str


def resolve_precision(precision: str, *, cuda: bool | None = None, bf16_supported: bool | None = None
                      ) -> ResolvedPrecision:
    """`bf16`/`fp16`/`fp32` as given. `auto`: bf16 on a GPU that computes in it (Ampere or newer), fp16 mixed
    precision on an older GPU (bf16 would be refused there, or emulated slowly), and on a machine without a GPU
    CPU bf16 autocast, TRL's default (per-sequence log-probs within about 1e-5 relative of fp32)."""
    if precision != "auto":
        return ResolvedPrecision(precision, "set in the config")
    if cuda is None or (cuda and bf16_supported is None):
        import torch

        cuda = torch.cuda.is_available() if cuda is None else cuda
        if cuda and bf16_supported is None:
            bf16_supported = torch.cuda.is_bf16_supported(including_emulation=False)
    if not cuda:
        return ResolvedPrecision("bf16", "auto: no GPU, CPU bf16 autocast (TRL's default; set precision: fp32 for "
                                         "full precision)")
    if bf16_supported:
        return ResolvedPrecision("bf16", "auto: the GPU computes in bf16")
    return ResolvedPrecision("fp16", "auto: the GPU has no native bf16 (older than Ampere), so fp16 mixed precision "
                                     "with loss scaling")
