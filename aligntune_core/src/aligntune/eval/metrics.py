"""The built-in metrics: reward_margin, preference_accuracy, win_rate (definitions in docs/evaluation.md)."""

from __future__ import annotations

from aligntune.eval.context import EvalContext
from aligntune.eval.statistics import mean_with_ci, wilson_interval


def reward_margin(context: EvalContext) -> dict[str, float]:
    """Mean over pairs of β·[(log π(y_w|x) − log π_ref(y_w|x)) − (log π(y_l|x) − log π_ref(y_l|x))]."""
    summary = mean_with_ci([pair.margin for pair in context.pairs])
    return {
        "reward_margin": summary["mean"],
        "reward_margin_std": summary["std"],
        "reward_margin_ci95_low": summary["ci95_low"],
        "reward_margin_ci95_high": summary["ci95_high"],
        "reward_margin_n": summary["n"],
    }


def preference_accuracy(context: EvalContext) -> dict[str, float]:
    """Fraction of pairs whose reward margin is > 0 (a tie, margin 0, does not count as preferred)."""
    n = len(context.pairs)
    correct = sum(1 for pair in context.pairs if pair.margin > 0)
    low, high = wilson_interval(correct, n)
    return {
        "preference_accuracy": correct / n,
        "preference_accuracy_ci95_low": low,
        "preference_accuracy_ci95_high": high,
        "preference_accuracy_n": float(n),
    }


def win_rate(context: EvalContext) -> dict[str, float]:
    """Fraction of prompts where the judge scores the policy's response above the reference's; ties count ½."""
    comparisons = context.comparisons or []
    if not comparisons:
        raise ValueError("win_rate needs generated and judged responses, and none were produced")
    outcomes = [c.outcome for c in comparisons]
    summary = mean_with_ci(outcomes)
    return {
        "win_rate": summary["mean"],
        "win_rate_ci95_low": max(0.0, summary["ci95_low"]),
        "win_rate_ci95_high": min(1.0, summary["ci95_high"]),
        "win_rate_wins": float(sum(1 for o in outcomes if o == 1.0)),
        "win_rate_ties": float(sum(1 for o in outcomes if o == 0.5)),
        "win_rate_losses": float(sum(1 for o in outcomes if o == 0.0)),
        "win_rate_n": float(len(outcomes)),
    }
