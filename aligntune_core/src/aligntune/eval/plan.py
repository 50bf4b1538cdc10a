"""Resolving an `EvalConfig` against the run record (`aligntune_run.json`) into what exactly will be compared."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import structlog

from aligntune.core.model_paths import check_model_dir
from aligntune.core.run_record import RUN_FILE
from aligntune.errors import ConfigError
from aligntune.eval.config import EvalConfig
from aligntune.runs.record import RunRecord, load_run_record

log = structlog.get_logger("aligntune.eval")

DEFAULT_BETA = 0.1
DEFAULT_MAX_SEQ_LENGTH = 512


@attrs.frozen
class EvalPlan:
    policy_path: str  # full model, or the LoRA adapter directory when policy_adapter_on is set
    policy_adapter_on: str | None  # base model the adapter applies to
    reference_path: str
    beta: float
    beta_source: str
    max_seq_length: int
    max_prompt_length: int | None
    tokenizer_path: str
    run_record: RunRecord | None
    max_completion_length: int | None = None
    system_prompt: str | None = None  # put at the start of every prompt, as in training (see aligntune.data)

    @property
    def reference_is_policy_base(self) -> bool:
        """The reference is the adapter's own base: score it with the adapter disabled, no second copy."""
        return self.policy_adapter_on is not None and self.policy_adapter_on == self.reference_path

    @property
    def reference_is_policy(self) -> bool:
        return self.policy_adapter_on is None and self.policy_path == self.reference_path

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self, filter=lambda field, _value: field.name != "run_record")


def _holds_only_an_adapter(model_path: str | None) -> bool:
    if model_path is None:
        return False
    path = Path(model_path).expanduser()
    return (path / "adapter_config.json").is_file() and not (path / "config.json").is_file()


def _check_record(record: RunRecord, config: EvalConfig) -> None:
    """What evaluation reads from the record must be there (a format-1 record may lack parts): an error naming the
    key, never a default standing in for what training used."""
    purpose = "evaluation (to score the pairs as they were trained)"
    # (tokenization.max_completion_length may be absent from a format-1 record: the option came later, so none.)
    record.require("tokenization.max_seq_length", "tokenization.max_prompt_length", "config", purpose=purpose,
                   hint="Give max_seq_length and max_prompt_length as training used them, or evaluate a model "
                        "whose record this aligntune wrote.")
    if config.beta is None:
        record.require("beta", purpose=purpose, hint="Give beta (the value the model was trained with).")
    if config.reference_model_path is None:
        record.require("model_name", purpose=purpose,
                       hint="Give reference_model_path (the model it was trained from).")
    if record.lacks("run.model_saved"):
        log.warning(f"{record.source} does not say whether the run finished (no run.model_saved, "
                    f"{record.writer_label}): the model in {config.model_path} is evaluated as it is")


def resolve_plan(config: EvalConfig) -> EvalPlan:
    use_lora = config.use_lora
    if not use_lora and _holds_only_an_adapter(config.model_path):
        # A LoRA run's output: an adapter and no model of its own. It can only mean the adapter on its base.
        use_lora = True
        log.info("model_path holds a LoRA adapter: it is scored on its base model (as with use_lora: true)",
                 model_path=config.model_path)
    if config.model_path is not None:
        check_model_dir(config.model_path, option="model_path", need_tokenizer=False, adapter_ok=use_lora)
    record = load_run_record(config.model_path) if config.model_path else None
    if record is not None:
        _check_record(record, config)
    if record is not None and not record.lacks("run") and record.run.model_saved is False:
        raise ConfigError(
            f"model_path {config.model_path} holds no trained model: its run ended with stop_reason "
            f"{record.run.stop_reason!r}. Evaluate one of its checkpoints (model_path: "
            f"{config.model_path}/checkpoint-N) or finish the run with aligntune train --resume."
        )
    trained_from = None if record is None or record.lacks("model_name") else record.model_name

    base_model = config.base_model
    if use_lora and config.model_path is None:
        # The guide's base-model form: the same config without model_path evaluates the base model itself.
        log.info("no model_path: evaluating the base model (use_lora has no adapter to apply)",
                 base_model=base_model or config.reference_model_path)
    elif use_lora and base_model is None:
        base_model = (None if record is None or record.lacks("base_model") else record.base_model) or trained_from
        if base_model is None:
            raise ConfigError(
                f"use_lora=true needs base_model (the model the adapter in {config.model_path} was trained on); "
                f"it is not given and {config.model_path}/{RUN_FILE} does not name it"
            )

    reference = config.reference_model_path or trained_from or base_model
    if reference is None:
        if config.model_path is None:
            raise ConfigError("nothing to evaluate: set model_path (the trained model) or reference_model_path")
        # A model with no run record and no reference named: AlignTune 0.x's base-model form. It is scored
        # against itself (every implicit reward is 0), and that is said, never passed off as a comparison.
        reference = config.model_path
        log.warning(
            f"reference_model_path is not set and {config.model_path} has no {RUN_FILE} naming the model it was "
            "trained from: it is scored against itself, so reward margins and log-ratios are 0",
            hint="set reference_model_path to the model it was trained from to measure what training changed",
        )

    if config.model_path is None:
        policy_path, adapter_on = base_model or reference, None  # the base model evaluated as the policy
    elif use_lora:
        policy_path, adapter_on = config.model_path, base_model
    else:
        policy_path, adapter_on = config.model_path, None

    if config.beta is not None:
        beta, beta_source = float(config.beta), "config"
    elif record is not None:
        beta, beta_source = float(record.beta), f"{config.model_path}/{RUN_FILE}"
    else:
        beta, beta_source = DEFAULT_BETA, "default"
        log.warning("beta not given and not found in a run record; using the default", beta=beta,
                    hint="set beta to the value the model was trained with")

    limits = None if record is None else record.tokenization
    max_seq_length = config.max_seq_length or (limits and limits.max_seq_length) or DEFAULT_MAX_SEQ_LENGTH
    max_prompt_length = config.max_prompt_length or (limits and limits.max_prompt_length)
    max_completion_length = None if limits is None or record is None or record.lacks(
        "tokenization.max_completion_length") else limits.max_completion_length
    system_prompt = config.system_prompt
    trained_config: dict[str, Any] = {} if record is None else record.config
    trained_with = trained_config.get("system_prompt")
    if system_prompt is None and trained_with:
        system_prompt = trained_with
        log.info("system_prompt taken from the run record: the pairs are scored as they were trained",
                 source=f"{config.model_path}/{RUN_FILE}")
    if trained_config.get("ld_alpha") is not None or trained_config.get("use_weighting"):
        # The metrics are defined on whole-completion log-probs (docs/evaluation.md); say that training weighed them.
        log.info("the run trained with length-desensitised or weighted log-probs; evaluation scores the plain sums "
                 "over each completion (the standard DPO implicit reward)", ld_alpha=trained_config.get("ld_alpha"),
                 use_weighting=bool(trained_config.get("use_weighting")))
    # Training saves the tokenizer next to the model or adapter; the base model's is the fallback.
    tokenizer_path = config.model_path or policy_path
    return EvalPlan(
        policy_path=policy_path,
        policy_adapter_on=adapter_on,
        reference_path=reference,
        beta=beta,
        beta_source=beta_source,
        max_seq_length=int(max_seq_length),
        max_prompt_length=max_prompt_length,
        tokenizer_path=tokenizer_path,
        max_completion_length=max_completion_length,
        system_prompt=system_prompt,
        run_record=record,
    )
