"""Built-in metrics and judges, registered through the plugin manager like third-party ones (no torch here)."""

from __future__ import annotations

from collections.abc import Iterator

from aligntune.plugins.hookspecs import hookimpl
from aligntune.plugins.records import JudgeSpec, MetricSpec, lazy


@hookimpl
def aligntune_metrics() -> Iterator[MetricSpec]:
    yield MetricSpec(name="reward_margin", summary="Mean implicit reward margin beta*(chosen - rejected log-ratio)",
                     compute=lazy("aligntune.eval.metrics:reward_margin"))
    yield MetricSpec(name="preference_accuracy", summary="Fraction of pairs with a positive reward margin (ties 1/2)",
                     compute=lazy("aligntune.eval.metrics:preference_accuracy"))
    yield MetricSpec(name="win_rate", summary="Judge prefers the policy's generation over the reference's (ties 1/2)",
                     compute=lazy("aligntune.eval.metrics:win_rate"), needs_generation=True)
    yield MetricSpec(name="kl_divergence",
                     summary="Estimate of KL(policy || reference) on the dataset's completions: mean log-ratio",
                     compute=lazy("aligntune.eval.metrics:kl_divergence"))
    yield MetricSpec(name="log_ratio", summary="Mean log pi(y|x) - log pi_ref(y|x): chosen, rejected and overall",
                     compute=lazy("aligntune.eval.metrics:log_ratio"))
    yield MetricSpec(name="implicit_reward", summary="Mean beta*log-ratio of chosen and rejected, and of the margin",
                     compute=lazy("aligntune.eval.metrics:implicit_reward"))
    yield MetricSpec(name="calibration",
                     summary="Expected calibration error (10 bins) of sigmoid(margin) as P(chosen preferred)",
                     compute=lazy("aligntune.eval.metrics:calibration"))
    yield MetricSpec(name="reward_accuracy",
                     summary="Share of pairs with beta*margin > 0, ties 1/2 (= preference_accuracy)",
                     compute=lazy("aligntune.eval.metrics:reward_accuracy"))
    yield MetricSpec(name="policy_entropy", summary="Mean per-token entropy of the policy over the completion tokens",
                     compute=lazy("aligntune.eval.metrics:policy_entropy"))


@hookimpl
def aligntune_judges() -> Iterator[JudgeSpec]:
    yield JudgeSpec(name="reward_model", summary="A sequence-classification reward model (judge_model_path)",
                    create=lazy("aligntune.eval.judges:create_reward_model_judge"))
