"""What metrics receive: per-pair scores and, for win rate, judged generations."""

from __future__ import annotations

from typing import Any

import attrs


@attrs.frozen
class PairScores:
    """Summed completion log-probs of one pair under the policy and the reference, and the implicit rewards."""

    index: int
    policy_chosen_logps: float
    policy_rejected_logps: float
    ref_chosen_logps: float
    ref_rejected_logps: float
    beta: float
    # The policy's next-token entropy (nats) summed over each completion's scored tokens, and their counts;
    # None when the scorer did not compute it.
    policy_chosen_entropy: float | None = None
    policy_rejected_entropy: float | None = None
    chosen_tokens: int = 0
    rejected_tokens: int = 0

    @property
    def chosen_log_ratio(self) -> float:
        """log π(y_w|x) − log π_ref(y_w|x)."""
        return self.policy_chosen_logps - self.ref_chosen_logps

    @property
    def rejected_log_ratio(self) -> float:
        """log π(y_l|x) − log π_ref(y_l|x)."""
        return self.policy_rejected_logps - self.ref_rejected_logps

    @property
    def chosen_reward(self) -> float:
        return self.beta * (self.policy_chosen_logps - self.ref_chosen_logps)

    @property
    def rejected_reward(self) -> float:
        return self.beta * (self.policy_rejected_logps - self.ref_rejected_logps)

    @property
    def margin(self) -> float:
        """β·[(log π(y_w|x) − log π_ref(y_w|x)) − (log π(y_l|x) − log π_ref(y_l|x))]."""
        return self.chosen_reward - self.rejected_reward


@attrs.frozen
class Comparison:
    """One prompt's policy and reference responses (same decoding settings) and the judge's scores."""

    prompt: Any
    policy_response: str
    reference_response: str
    policy_score: float
    reference_score: float

    @property
    def outcome(self) -> float:
        """1 if the policy's response scores higher, 0 if lower, ½ for a tie."""
        if self.policy_score > self.reference_score:
            return 1.0
        if self.policy_score < self.reference_score:
            return 0.0
        return 0.5


@attrs.frozen
class NotComputed:
    """A requested metric that could not be computed: why, and the one setting that enables it."""

    reason: str
    add: str  # e.g. "judge_model_path=<reward model id or path>"

    def as_dict(self) -> dict[str, str]:
        return {"reason": self.reason, "add": self.add}


@attrs.frozen
class EvalContext:
    pairs: list[PairScores]
    comparisons: list[Comparison] | None
    beta: float
    config: Any = None
