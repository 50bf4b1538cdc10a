"""Built-in metrics and judges, registered through the plugin manager like third-party ones (no torch here)."""

from __future__ import annotations

from collections.abc import Iterator

from aligntune.plugins.hookspecs import hookimpl
from aligntune.plugins.records import JudgeSpec, MetricSpec, lazy


@hookimpl
def aligntune_metrics() -> Iterator[MetricSpec]:
    yield MetricSpec(name="reward_margin", summary="Mean implicit reward margin beta*(chosen - rejected log-ratio)",
                     compute=lazy("aligntune.eval.metrics:reward_margin"))
    yield MetricSpec(name="preference_accuracy", summary="Fraction of pairs with a positive reward margin",
                     compute=lazy("aligntune.eval.metrics:preference_accuracy"))
    yield MetricSpec(name="win_rate", summary="Judge prefers the policy's generation over the reference's (ties 1/2)",
                     compute=lazy("aligntune.eval.metrics:win_rate"), needs_generation=True)


@hookimpl
def aligntune_judges() -> Iterator[JudgeSpec]:
    yield JudgeSpec(name="reward_model", summary="A sequence-classification reward model (judge_model_path)",
                    create=lazy("aligntune.eval.judges:create_reward_model_judge"))
