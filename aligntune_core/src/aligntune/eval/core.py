"""`run_eval`: reward margin, preference accuracy, win rate and the other metrics of a preference-tuned model.

    from aligntune.eval.core import EvalConfig, run_eval
    results = run_eval(EvalConfig(model_path="output/run", output_dir="output/run/eval", dataset_name="pairs.jsonl",
                                  metrics=["reward_margin", "preference_accuracy"]))
    results = run_eval(EvalConfig(model_path="output/run", output_dir="output/run/eval"), dataset=my_dataset)

Definitions are in docs/evaluation.md.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any

import structlog

from aligntune.errors import ConfigError
from aligntune.eval.config import EvalConfig
from aligntune.eval.context import NotComputed
from aligntune.eval.data import DATASET_REQUIRED
from aligntune.runs.output_dir import check_writable_dir

__all__ = ["EvalConfig", "EvalResults", "run_eval"]

log = structlog.get_logger("aligntune.eval")

NO_JUDGE_REASON = "no judge is configured to score the generated responses"
NO_JUDGE_ADD = "judge_model_path=<a sequence-classification reward model, hub id or path>"


class NoJudgeError(ConfigError):
    """A metric that needs a judge was requested and no judge is configured."""


class EvalResults(dict):
    """`{metric: value, <metric>_<detail>: value, ...}`; a requested metric that could not be computed has the value
    NaN (never a made-up number), and `not_computed[name]` says why and what to add."""

    def __init__(self, values: dict[str, float], not_computed: dict[str, NotComputed] | None = None) -> None:
        super().__init__(values)
        self.not_computed: dict[str, NotComputed] = dict(not_computed or {})


def _resolve_metrics(config: EvalConfig):
    from aligntune.plugins import get_metric

    return [get_metric(name) for name in dict.fromkeys(config.metrics)]


def _resolve_judge(config: EvalConfig):
    from aligntune.plugins import get_judge

    name = config.judge or ("reward_model" if config.judge_model_path else None)
    if name is None:
        raise NoJudgeError(
            "win_rate needs a judge to score the generated responses, and none is configured: set "
            "judge_model_path to a sequence-classification reward model (the built-in 'reward_model' judge), or "
            "judge to the name of an installed judge plugin. win_rate is never replaced by another metric "
            "(strict_metrics=true makes a metric that cannot be computed an error; without it, the others are "
            "computed and win_rate is reported as not computed)."
        )
    return get_judge(name)


def _unique_prompts(rows: list[dict[str, Any]]) -> list[Any]:
    seen: dict[str, Any] = {}
    for row in rows:
        seen.setdefault(json.dumps(row["prompt"], sort_keys=True), row["prompt"])
    return list(seen.values())


def _metrics_without_judge(config: EvalConfig, metric_specs: list) -> tuple[Any, dict[str, NotComputed]]:
    """The judge's spec; or, when none is configured and strict_metrics is off, None and the metrics that need one
    (reported as not computed: the others still are)."""
    try:
        return _resolve_judge(config), {}
    except NoJudgeError:
        if config.strict_metrics:
            raise
    skipped = {spec.name: NotComputed(reason=NO_JUDGE_REASON, add=NO_JUDGE_ADD)
               for spec in metric_specs if spec.needs_generation}
    for name, entry in skipped.items():
        log.warning("metric not computed", metric=name, reason=entry.reason, add=entry.add,
                    hint="strict_metrics=true makes this an error")
    return None, skipped


def run_eval(config: EvalConfig, dataset: Any = None, *, dataset_dict: Any = None) -> EvalResults:
    """Evaluate; returns `{metric: value, <metric>_<detail>: value, ...}` and writes the files into output_dir.

    `dataset` (or AlignTune 0.x's `dataset_dict`): a `datasets.Dataset`, a `DatasetDict` (its `config.split`, else
    "test") or a list of {prompt, chosen, rejected} dicts, scored instead of loading `dataset_name`."""
    from aligntune.logging_setup import ensure_logging

    ensure_logging()
    import torch

    from aligntune.eval.context import Comparison, EvalContext
    from aligntune.eval.data import load_eval_data
    from aligntune.eval.generation import generate
    from aligntune.eval.models import load_models, resolve_device, unsloth_backend
    from aligntune.eval.plan import resolve_plan
    from aligntune.eval.report import write_report
    from aligntune.eval.scoring import score_pairs

    if not isinstance(config, EvalConfig):
        raise TypeError(f"run_eval expects an EvalConfig, got {type(config).__name__}")
    if dataset is not None and dataset_dict is not None:
        raise ConfigError("run_eval got both dataset and dataset_dict (AlignTune 0.x's name for it); pass one")
    dataset = dataset if dataset is not None else dataset_dict
    if dataset is None and config.dataset_name is None:
        raise ConfigError(DATASET_REQUIRED)  # before any work
    metric_specs = _resolve_metrics(config)
    judge_spec, not_computed = None, {}
    if any(spec.needs_generation for spec in metric_specs):
        judge_spec, not_computed = _metrics_without_judge(config, metric_specs)
    computed_specs = [spec for spec in metric_specs if spec.name not in not_computed]
    needs_generation = any(spec.needs_generation for spec in computed_specs)
    if config.use_unsloth:
        unsloth_backend()  # before any work: a missing plugin names use_unsloth and what to install
    else:
        resolve_device(config.device)
    # Before any scoring: the results must have somewhere to go.
    check_writable_dir(Path(config.output_dir), hint="give a directory for the evaluation results", error=ConfigError)
    plan = resolve_plan(config)
    data, data_label, split = load_eval_data(config, dataset, system_prompt=plan.system_prompt)
    rows = data.dataset.to_list()
    log.info("evaluating", policy=plan.policy_path, reference=plan.reference_path, beta=plan.beta, pairs=len(rows),
             metrics=[spec.name for spec in computed_specs], not_computed=sorted(not_computed) or None)
    torch.manual_seed(config.seed)
    models = load_models(config, plan)
    pairs = score_pairs(models, rows, batch_size=config.batch_size)

    comparisons = None
    if needs_generation:
        judge = judge_spec.create(config)
        prompts = _unique_prompts(rows)
        policy_responses = generate(models.policy, models.tokenizer, prompts, config, context=contextlib.nullcontext,
                                    desc="Generating (policy)", max_prompt_length=plan.max_prompt_length)
        if plan.reference_is_policy:
            reference_responses = list(policy_responses)
        else:
            reference_responses = generate(models.reference_model, models.tokenizer, prompts, config,
                                           context=models.reference_context, desc="Generating (reference)",
                                           max_prompt_length=plan.max_prompt_length)
        policy_scores = judge.score(prompts, policy_responses)
        reference_scores = judge.score(prompts, reference_responses)
        comparisons = [
            Comparison(prompt=p, policy_response=pr, reference_response=rr, policy_score=ps, reference_score=rs)
            for p, pr, rr, ps, rs in zip(prompts, policy_responses, reference_responses, policy_scores,
                                         reference_scores)
        ]

    context = EvalContext(pairs=pairs, comparisons=comparisons, beta=plan.beta, config=config)
    values: dict[str, float] = {}
    for spec in metric_specs:
        if spec.name in not_computed:
            values[spec.name] = math.nan  # never a made-up value; results.json writes null
            continue
        computed = spec.compute(context)
        if spec.name not in computed:
            raise ConfigError(f"metric plugin {spec.name!r} did not return a value under its own name")
        values.update({key: float(value) for key, value in computed.items()})
    values["total"] = len(rows)  # pairs scored (AlignTune 0.x's key)
    results = EvalResults(values, not_computed)
    write_report(Path(config.output_dir), results=results, context=context, rows=rows, plan=plan.as_dict(),
                 config=config.to_dict(), data_report=data.report, metric_names=[s.name for s in metric_specs],
                 data_label=data_label, split=split, not_computed=not_computed)
    log.info("evaluation written", output_dir=config.output_dir,
             **{spec.name: round(results[spec.name], 4) for spec in computed_specs})
    return results
