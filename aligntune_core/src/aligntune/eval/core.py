"""`run_eval`: reward margin, preference accuracy and win rate of a preference-tuned model.

    from aligntune.eval.core import EvalConfig, run_eval
    results = run_eval(EvalConfig(model_path="output/run", output_dir="output/run/eval", dataset_name="pairs.jsonl",
                                  metrics=["reward_margin", "preference_accuracy"]))

Definitions are in docs/evaluation.md.
"""

from __future__ import annotations

import contextlib
import os
import json
from pathlib import Path
from typing import Any

import structlog

from aligntune.errors import ConfigError
from aligntune.eval.config import EvalConfig

__all__ = ["EvalConfig", "run_eval"]

log = structlog.get_logger("aligntune.eval")


def _resolve_metrics(config: EvalConfig):
    from aligntune.plugins import get_metric

    return [get_metric(name) for name in dict.fromkeys(config.metrics)]


def _resolve_judge(config: EvalConfig):
    from aligntune.plugins import get_judge

    name = config.judge or ("reward_model" if config.judge_model_path else None)
    if name is None:
        raise ConfigError(
            "win_rate needs a judge to score the generated responses, and none is configured: set "
            "judge_model_path to a sequence-classification reward model (the built-in 'reward_model' judge), or "
            "judge to the name of an installed judge plugin. win_rate is never replaced by another metric."
        )
    return get_judge(name)


def _unique_prompts(rows: list[dict[str, Any]]) -> list[Any]:
    seen: dict[str, Any] = {}
    for row in rows:
        seen.setdefault(json.dumps(row["prompt"], sort_keys=True), row["prompt"])
    return list(seen.values())


def _split(config: EvalConfig) -> str:
    """The split to score. A single local file has no splits: scoring it as "test" would label the training data
    as held-out, so there the split must be given."""
    if config.split is not None:
        return config.split
    single_file = (config.data_files is None and Path(config.dataset_name).expanduser().is_file()) or isinstance(
        config.data_files, (str, list, tuple))
    if single_file:
        raise ConfigError(
            f"dataset {config.dataset_name!r} is a single file with no splits, and split is not set: it would be "
            "scored and labelled as the 'test' split even if it is the training data. Set split explicitly (e.g. "
            "split: test for a held-out file), or give data_files={train: ..., test: ...}."
        )
    return "test"


def _check_output_dir(directory: Path) -> None:
    """Before any scoring: the results must have somewhere to go."""
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"output_dir {directory} is a file; give a directory for the evaluation results")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"output_dir {directory}: cannot create it ({exc.strerror or exc})") from None
    if not os.access(directory, os.W_OK):
        raise ConfigError(f"output_dir {directory}: not writable")


def run_eval(config: EvalConfig) -> dict[str, float]:
    """Evaluate; returns `{metric: value, <metric>_<detail>: value, ...}` and writes the files into output_dir."""
    from aligntune.logging_setup import ensure_logging

    ensure_logging()
    import torch

    from aligntune.data import load_preference_data
    from aligntune.eval.context import Comparison, EvalContext
    from aligntune.eval.generation import generate
    from aligntune.eval.models import load_models
    from aligntune.eval.plan import resolve_plan
    from aligntune.eval.report import write_report
    from aligntune.eval.scoring import score_pairs

    if not isinstance(config, EvalConfig):
        raise TypeError(f"run_eval expects an EvalConfig, got {type(config).__name__}")
    metric_specs = _resolve_metrics(config)
    needs_generation = any(spec.needs_generation for spec in metric_specs)
    judge_spec = _resolve_judge(config) if needs_generation else None
    _check_output_dir(Path(config.output_dir))
    plan = resolve_plan(config)
    data = load_preference_data(
        config.dataset_name, split=_split(config), data_files=config.data_files, dataset_config=config.dataset_config,
        max_samples=config.max_samples, dataset_adapter=config.dataset_adapter, **config.dataset_options,
    )
    rows = data.dataset.to_list()
    log.info("evaluating", policy=plan.policy_path, reference=plan.reference_path, beta=plan.beta, pairs=len(rows),
             metrics=[spec.name for spec in metric_specs])
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
    results: dict[str, float] = {}
    for spec in metric_specs:
        values = spec.compute(context)
        if spec.name not in values:
            raise ConfigError(f"metric plugin {spec.name!r} did not return a value under its own name")
        results.update({key: float(value) for key, value in values.items()})
    write_report(Path(config.output_dir), results=results, context=context, rows=rows, plan=plan.as_dict(),
                 config=config.to_dict(), data_report=data.report, metric_names=[s.name for s in metric_specs])
    log.info("evaluation written", output_dir=config.output_dir,
             **{spec.name: round(results[spec.name], 4) for spec in metric_specs})
    return results
