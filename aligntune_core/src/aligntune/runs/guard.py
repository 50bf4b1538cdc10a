"""The non-finite guard: a NaN/inf loss or gradient norm never reaches the weights unnoticed.

The trainer reports each micro-batch's loss (`note_loss`) and, before the optimizer step, the gradient norm
(`decide`). With policy `stop` the run stops before the bad update is applied; with `skip` the update is dropped
(gradients cleared, so the optimizer leaves weights and moments as they were) and counted, and the run stops once
more than `max_skipped` steps were skipped.
"""

from __future__ import annotations

import math

import attrs
import structlog

log = structlog.get_logger("aligntune.runs")


class NonFiniteStop(Exception):
    """Raised inside the training loop; the trainer turns it into a user-facing `NonFiniteError`."""

    def __init__(self, step: int, quantity: str, why: str):
        super().__init__(f"step {step}: {quantity}; {why}")
        self.step = step
        self.quantity = quantity
        self.why = why


def _finite(value: float | None) -> bool:
    return value is None or math.isfinite(value)


@attrs.define
class NonFiniteGuard:
    policy: str = "stop"  # stop | skip
    max_skipped: int = 10
    skipped_total: int = 0
    skipped_in_window: int = 0
    _bad_loss: float | None = None

    def note_loss(self, value: float) -> None:
        """A micro-batch's loss; a non-finite one marks the current optimizer step as bad."""
        if not math.isfinite(value) and self._bad_loss is None:
            self._bad_loss = value

    @property
    def loss_flagged(self) -> bool:
        return self._bad_loss is not None

    def decide(self, step: int, grad_norm: float | None, *, loss_flagged_elsewhere: bool = False) -> bool:
        """Before optimizer step `step`: True means drop this update. Raises `NonFiniteStop` to stop the run."""
        if self._bad_loss is not None:
            quantity = f"the loss was {self._bad_loss}"
        elif loss_flagged_elsewhere:
            quantity = "the loss was not finite on another process"
        elif not _finite(grad_norm):
            quantity = f"the gradient norm was {grad_norm}"
        else:
            return False
        self._bad_loss = None
        if self.policy == "stop":
            raise NonFiniteStop(step, quantity, "the update was not applied (on_nonfinite: stop)")
        self.skipped_total += 1
        self.skipped_in_window += 1
        if self.skipped_total > self.max_skipped:
            raise NonFiniteStop(step, quantity, f"{self.skipped_total} steps skipped in all, more than "
                                                f"max_nonfinite_steps={self.max_skipped}")
        log.warning("skipped a step: not finite", step=step, reason=quantity, skipped=self.skipped_total,
                    limit=self.max_skipped)
        return True

    def end_window(self) -> int:
        """The number of skipped steps since the last log line (and start a new window)."""
        count, self.skipped_in_window = self.skipped_in_window, 0
        return count
