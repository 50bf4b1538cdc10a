"""The built-in metrics (definitions in docs/evaluation.md).

Notation, per pair i: the log-ratios ρ_w = log π(y_w|x) − log π_ref(y_w|x) and ρ_l = log π(y_l|x) − log π_ref(y_l|x)
(summed over completion tokens), the margin m = β·(ρ_w − ρ_l).
"""

from __future__ import annotations

import math

from aligntune.eval.context import EvalContext
from aligntune.eval.statistics import mean_with_ci, wilson_interval

CALIBRATION_BINS = 10


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _summary(name: str, values: list[float]) -> dict[str, float]:
    """`name` = the mean, with `_std`, `_ci95_low/high` and `_n`."""
    summary = mean_with_ci(values)
    return {
        name: summary["mean"],
        f"{name}_std": summary["std"],
        f"{name}_ci95_low": summary["ci95_low"],
        f"{name}_ci95_high": summary["ci95_high"],
        f"{name}_n": summary["n"],
    }


def reward_margin(context: EvalContext) -> dict[str, float]:
    """Mean over pairs of β·[(log π(y_w|x) − log π_ref(y_w|x)) − (log π(y_l|x) − log π_ref(y_l|x))]."""
    return _summary("reward_margin", [pair.margin for pair in context.pairs])


def _margin_accuracy(name: str, context: EvalContext) -> dict[str, float]:
    """The share of pairs whose margin is > 0; a margin of exactly 0 (a tie) counts ½."""
    n = len(context.pairs)
    wins = sum(1 for pair in context.pairs if pair.margin > 0)
    ties = sum(1 for pair in context.pairs if pair.margin == 0)
    successes = wins + 0.5 * ties
    low, high = wilson_interval(successes, n)
    return {
        name: successes / n,
        f"{name}_ci95_low": low,
        f"{name}_ci95_high": high,
        f"{name}_ties": float(ties),
        f"{name}_n": float(n),
    }


def preference_accuracy(context: EvalContext) -> dict[str, float]:
    """Share of pairs with margin > 0, ties (margin exactly 0) counted ½; `_ties` is their count."""
    return _margin_accuracy("preference_accuracy", context)


def reward_accuracy(context: EvalContext) -> dict[str, float]:
    """AlignTune 0.x's name: the share of pairs where β·margin > 0, ties ½ — the same quantity as
    preference_accuracy (the implicit reward ranks the pair the way the label does)."""
    return _margin_accuracy("reward_accuracy", context)


def log_ratio(context: EvalContext) -> dict[str, float]:
    """Mean of log π(y|x) − log π_ref(y|x): over chosen completions, rejected ones, and all 2N of them."""
    chosen = [pair.chosen_log_ratio for pair in context.pairs]
    rejected = [pair.rejected_log_ratio for pair in context.pairs]
    return {
        "log_ratio": _mean(chosen + rejected),
        "log_ratio_chosen": _mean(chosen),
        "log_ratio_rejected": _mean(rejected),
        "log_ratio_n": float(len(context.pairs)),
    }


def kl_divergence(context: EvalContext) -> dict[str, float]:
    """A sample-based estimate of KL(π || π_ref) on the dataset's fixed completions (not samples of π): the mean
    over pairs of ½(ρ_w + ρ_l). It can be negative, since the completions are not drawn from π."""
    per_pair = [0.5 * (pair.chosen_log_ratio + pair.rejected_log_ratio) for pair in context.pairs]
    return _summary("kl_divergence", per_pair)


def implicit_reward(context: EvalContext) -> dict[str, float]:
    """DPO's implicit reward r(x, y) = β·(log π(y|x) − log π_ref(y|x)): its mean on chosen and on rejected
    completions, and of the margin r_w − r_l. The headline value is the margin: r is only determined up to a
    per-prompt constant, which the margin cancels (so it equals reward_margin)."""
    chosen = _mean([pair.chosen_reward for pair in context.pairs])
    rejected = _mean([pair.rejected_reward for pair in context.pairs])
    margin = _mean([pair.margin for pair in context.pairs])
    return {
        "implicit_reward": margin,
        "implicit_reward_chosen": chosen,
        "implicit_reward_rejected": rejected,
        "implicit_reward_margin": margin,
        "implicit_reward_n": float(len(context.pairs)),
    }


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def expected_calibration_error(probabilities: list[float], labels: list[float], bins: int = CALIBRATION_BINS) -> float:
    """Σ_b (n_b / N)·|mean p in b − mean label in b| over `bins` equal-width bins of [0, 1] (p = 1 in the last)."""
    groups: list[list[tuple[float, float]]] = [[] for _ in range(bins)]
    for p, y in zip(probabilities, labels, strict=True):
        groups[min(int(p * bins), bins - 1)].append((p, y))
    n = len(probabilities)
    return sum(len(g) / n * abs(_mean([p for p, _ in g]) - _mean([y for _, y in g])) for g in groups if g)


def calibration(context: EvalContext) -> dict[str, float]:
    """Expected calibration error of p = σ(m) read as P(chosen preferred), against the labels (every label is
    "chosen preferred", 1), in 10 equal-width bins. With only such labels it equals 1 − mean p."""
    probabilities = [_sigmoid(pair.margin) for pair in context.pairs]
    return {
        "calibration": expected_calibration_error(probabilities, [1.0] * len(probabilities)),
        "calibration_mean_probability": _mean(probabilities),
        "calibration_bins": float(CALIBRATION_BINS),
        "calibration_n": float(len(probabilities)),
    }


def policy_entropy(context: EvalContext) -> dict[str, float]:
    """Mean, over every scored completion token (chosen and rejected), of the policy's next-token entropy
    H = −Σ_v π(v|x, y_<t) log π(v|x, y_<t) in nats."""
    pairs = context.pairs
    if any(p.policy_chosen_entropy is None or p.policy_rejected_entropy is None for p in pairs):
        raise ValueError("policy_entropy needs per-token entropies from the scorer, and none were computed")
    chosen_sum = sum(p.policy_chosen_entropy for p in pairs)
    rejected_sum = sum(p.policy_rejected_entropy for p in pairs)
    chosen_tokens = sum(p.chosen_tokens for p in pairs)
    rejected_tokens = sum(p.rejected_tokens for p in pairs)
    if chosen_tokens + rejected_tokens == 0:
        raise ValueError("policy_entropy: no completion token was scored (every completion was truncated away)")
    return {
        "policy_entropy": (chosen_sum + rejected_sum) / (chosen_tokens + rejected_tokens),
        "policy_entropy_chosen": chosen_sum / chosen_tokens if chosen_tokens else math.nan,
        "policy_entropy_rejected": rejected_sum / rejected_tokens if rejected_tokens else math.nan,
        "policy_entropy_tokens": float(chosen_tokens + rejected_tokens),
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
