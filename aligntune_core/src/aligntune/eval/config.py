"""`EvalConfig`: what to evaluate, against which reference, on which data, with which metrics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from aligntune.core.config import (
    _check,
    InvalidValueError,
    _is_int,
    _is_number,
    _non_empty_str,
    _optional,
    config_from_mapping,
    keyword_checked,
)

TASK_TYPES = ("dpo",)
DTYPES = ("float32", "bfloat16", "float16", "auto")
DEFAULT_METRICS = ("reward_margin", "preference_accuracy")


def _metric_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return list(value)


@keyword_checked
@attrs.frozen(kw_only=True, init=False)
class EvalConfig:
    """Evaluation settings. Missing values are read back from the `aligntune_run.json` next to the model."""

    output_dir: str = attrs.field(converter=str, validator=_check(_non_empty_str, "a directory for the results"))
    dataset_name: str = attrs.field(validator=_check(_non_empty_str, "a dataset id or a local file/directory"))
    model_path: str | None = attrs.field(default=None, validator=_check(_optional(_non_empty_str), "a model path"))
    task_type: str = attrs.field(default="dpo", validator=_check(lambda v: v in TASK_TYPES, f"one of {TASK_TYPES}"))
    data_task_type: str = attrs.field(default="dpo", validator=_check(lambda v: v in TASK_TYPES, f"one of {TASK_TYPES}"))
    metrics: list[str] = attrs.field(
        factory=lambda: list(DEFAULT_METRICS),
        converter=_metric_list,
        validator=_check(lambda v: bool(v) and all(isinstance(m, str) for m in v), "a non-empty list of metric names"),
    )
    reference_model_path: str | None = attrs.field(
        default=None, validator=_check(_optional(_non_empty_str), "a model id or path")
    )
    # None: "test" — except for a single local file, which has no splits: there it must be given (see run_eval).
    split: str | None = attrs.field(default=None, validator=_check(_optional(_non_empty_str), "a split name"))
    max_samples: int | None = attrs.field(
        default=None, validator=_check(_optional(lambda v: _is_int(v) and v > 0), "an integer >= 1 or null")
    )
    use_lora: bool = attrs.field(default=False, validator=_check(lambda v: isinstance(v, bool), "true or false"))
    base_model: str | None = attrs.field(default=None, validator=_check(_optional(_non_empty_str), "a model id or path"))
    use_unsloth: bool = attrs.field(default=False, validator=_check(lambda v: isinstance(v, bool), "true or false"))
    beta: float | None = attrs.field(
        default=None, validator=_check(_optional(lambda v: _is_number(v) and v > 0), "a number > 0 or null")
    )
    batch_size: int = attrs.field(default=8, validator=_check(lambda v: _is_int(v) and v > 0, "an integer >= 1"))
    max_seq_length: int | None = attrs.field(
        default=None, validator=_check(_optional(lambda v: _is_int(v) and v >= 2), "an integer >= 2 or null")
    )
    max_prompt_length: int | None = attrs.field(
        default=None, validator=_check(_optional(lambda v: _is_int(v) and v > 0), "an integer >= 1 or null")
    )
    data_files: str | list[str] | dict[str, Any] | None = None
    dataset_config: str | None = attrs.field(default=None, validator=_check(_optional(_non_empty_str), "a name"))
    dataset_adapter: str | None = attrs.field(default=None, validator=_check(_optional(_non_empty_str), "a name"))
    dataset_options: dict[str, Any] = attrs.field(
        factory=dict, validator=_check(lambda v: isinstance(v, Mapping), "a mapping of adapter options")
    )
    judge: str | None = attrs.field(default=None, validator=_check(_optional(_non_empty_str), "a judge name"))
    judge_model_path: str | None = attrs.field(
        default=None, validator=_check(_optional(_non_empty_str), "a sequence-classification model id or path")
    )
    max_new_tokens: int = attrs.field(default=128, validator=_check(lambda v: _is_int(v) and v > 0, "an integer >= 1"))
    do_sample: bool = attrs.field(default=False, validator=_check(lambda v: isinstance(v, bool), "true or false"))
    temperature: float = attrs.field(default=1.0, validator=_check(lambda v: _is_number(v) and v > 0, "a number > 0"))
    top_p: float = attrs.field(default=1.0, validator=_check(lambda v: _is_number(v) and 0 < v <= 1, "in (0, 1]"))
    seed: int = attrs.field(default=42, validator=_check(_is_int, "an integer"))
    dtype: str = attrs.field(default="float32", validator=_check(lambda v: v in DTYPES, f"one of {DTYPES}"))

    def __attrs_post_init__(self) -> None:
        if self.use_lora and self.model_path is None:
            raise InvalidValueError("use_lora", "evaluates a LoRA adapter: set model_path to the adapter directory")
        if self.base_model is not None and not self.use_lora and self.model_path is not None:
            raise InvalidValueError(
                "base_model",
                "is only used with use_lora=true (an adapter on a base model); a full model in model_path needs none",
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, source: str | None = None,
                     lines: Mapping[str, int] | None = None) -> EvalConfig:
        return config_from_mapping(cls, values, source=source, lines=lines, required=("output_dir", "dataset_name"),
                                   docs="docs/evaluation.md")

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)
