"""`EvalConfig`: what to evaluate, against which reference, on which data, with which metrics.

AlignTune 0.x option names are accepted where they mean something here: declared on the field they stand for
(`metadata=aliases(...)`, `aligntune.core.options`), with retired names and value translations in
`aligntune.eval.compat`."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import attrs

from aligntune.core.config import (
    _check,
    _data_files,
    _is_int,
    _is_number,
    _non_empty_str,
    _optional,
    config_from_mapping,
    keyword_checked,
)
from aligntune.core.options import ALIGNTUNE_0X, InvalidValueError, aliases
from aligntune.data.transforms import column_mapping_problem
from aligntune.errors import ConfigError
from aligntune.eval.compat import translate_options

TASK_TYPES = ("dpo",)
DTYPES = ("float32", "bfloat16", "float16", "auto")
DEFAULT_METRICS = ("reward_margin", "preference_accuracy")


def _metric_list(value: str | list[str] | None) -> list[str]:
    if value is None:  # AlignTune 0.x's "not set"
        return list(DEFAULT_METRICS)
    if isinstance(value, str):
        return [value]
    return list(value) if isinstance(value, (list, tuple)) else value  # anything else: the validator names it


def _output_dir(value: str | os.PathLike[str]) -> str:
    """A `pathlib.Path` is a directory name too; a number or a list is not (never `str()`-ed into one)."""
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def _task_type(value: str | None) -> str:
    return "dpo" if value is None else value  # None: AlignTune 0.x's "the same as task_type"


_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:[0-9]+)?)$")


def _device(value: Any) -> bool:
    return value is None or (isinstance(value, str) and bool(_DEVICE.match(value)))


def _check_column_mapping(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """`{your column: prompt | chosen | rejected}`, as in AlignTune 0.x (source -> target)."""
    problem = column_mapping_problem(value)
    if problem is not None:
        raise InvalidValueError(attribute.name, problem)


def accepts_aligntune_0x(cls: type) -> type:
    """Translate AlignTune 0.x option names (and refuse the ones with no meaning here) before the keyword check."""
    checked_init = cls.__init__

    def __init__(self, **kwargs: Any) -> None:
        checked_init(self, **translate_options(cls, kwargs).values)

    __init__.__doc__ = cls.__doc__
    cls.__init__ = __init__
    return cls


@attrs.frozen
class Decoding:
    """How win-rate responses are generated (the same for the policy and the reference)."""

    do_sample: bool
    temperature: float | None
    top_p: float | None
    top_k: int | None


@accepts_aligntune_0x
@keyword_checked
@attrs.frozen(kw_only=True, init=False)
class EvalConfig:
    """Evaluation settings. Missing values are read back from the `aligntune_run.json` next to the model.

    `dataset_name` may be left out when the data is passed to `run_eval(config, dataset=...)`."""

    output_dir: str = attrs.field(converter=_output_dir,
                                  validator=_check(_non_empty_str, "a directory for the results"))
    dataset_name: str | None = attrs.field(
        default=None, validator=_check(_optional(_non_empty_str), "a dataset id or a local file/directory"))
    model_path: str | None = attrs.field(default=None, validator=_check(_optional(_non_empty_str), "a model path"))
    task_type: str = attrs.field(default="dpo", validator=_check(lambda v: v in TASK_TYPES, f"one of {TASK_TYPES}"))
    # None: AlignTune 0.x's "the same as task_type".
    data_task_type: str = attrs.field(default="dpo", converter=_task_type,
                                      validator=_check(lambda v: v in TASK_TYPES, f"one of {TASK_TYPES}"))
    metrics: list[str] = attrs.field(
        factory=lambda: list(DEFAULT_METRICS),
        converter=_metric_list,
        validator=_check(lambda v: isinstance(v, list) and bool(v) and all(isinstance(m, str) for m in v),
                         "a non-empty list of metric names"),
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
        default=None, validator=_check(_optional(lambda v: _is_number(v) and v > 0), "a number > 0 or null"),
        metadata=aliases(dpo_beta=ALIGNTUNE_0X),
    )
    batch_size: int = attrs.field(default=8, validator=_check(lambda v: _is_int(v) and v > 0, "an integer >= 1"))
    max_seq_length: int | None = attrs.field(
        default=None, validator=_check(_optional(lambda v: _is_int(v) and v >= 2), "an integer >= 2 or null"),
        metadata=aliases(max_length=ALIGNTUNE_0X),
    )
    max_prompt_length: int | None = attrs.field(
        default=None, validator=_check(_optional(lambda v: _is_int(v) and v > 0), "an integer >= 1 or null")
    )
    data_files: str | list[str] | dict[str, str | list[str]] | None = attrs.field(
        default=None, validator=_check(_data_files, "a path, a list of paths, or a mapping split -> paths"))
    dataset_config: str | None = attrs.field(default=None, validator=_check(_optional(_non_empty_str), "a name"))
    dataset_adapter: str | None = attrs.field(default=None, validator=_check(_optional(_non_empty_str), "a name"))
    dataset_options: dict[str, Any] = attrs.field(
        factory=dict, validator=_check(lambda v: isinstance(v, Mapping), "a mapping of adapter options")
    )
    # Run the model repository's own code (its modelling files) when loading: only for repositories you trust.
    trust_remote_code: bool = attrs.field(default=False, validator=_check(lambda v: isinstance(v, bool),
                                                                           "true or false"))
    # A system message put at the start of every prompt; None: the one the run was trained with (its record).
    system_prompt: str | None = attrs.field(default=None, validator=_check(_optional(_non_empty_str),
                                                                            "a non-empty string (the system message)"))
    judge: str | None = attrs.field(default=None, validator=_check(_optional(_non_empty_str), "a judge name"))
    judge_model_path: str | None = attrs.field(
        default=None, validator=_check(_optional(_non_empty_str), "a sequence-classification model id or path")
    )
    max_new_tokens: int = attrs.field(default=128, validator=_check(lambda v: _is_int(v) and v > 0, "an integer >= 1"))
    # None: sample when temperature (> 0), top_p or top_k is given, else greedy (AlignTune 0.x's rule).
    do_sample: bool | None = attrs.field(
        default=None, validator=_check(lambda v: v is None or isinstance(v, bool), "true, false or null"))
    temperature: float | None = attrs.field(
        default=None, validator=_check(_optional(lambda v: _is_number(v) and v >= 0),
                                       "a number >= 0 (0: greedy decoding) or null"))
    top_p: float | None = attrs.field(
        default=None, validator=_check(_optional(lambda v: _is_number(v) and 0 < v <= 1), "in (0, 1] or null"))
    top_k: int | None = attrs.field(
        default=None, validator=_check(_optional(lambda v: _is_int(v) and v > 0), "an integer >= 1 or null"))
    seed: int = attrs.field(default=42, validator=_check(_is_int, "an integer"))
    # AlignTune 0.x's precision (fp32, bf16, fp16, half, auto) is translated to these (aligntune.eval.compat).
    dtype: str = attrs.field(default="float32", validator=_check(lambda v: v in DTYPES, f"one of {DTYPES}"),
                             metadata=aliases(precision=ALIGNTUNE_0X))
    # None/"auto": cuda when available, else cpu.
    device: str | None = attrs.field(
        default=None, validator=_check(_device, "auto, cpu, cuda, cuda:N or mps"))
    column_mapping: dict[str, str] | None = attrs.field(default=None, validator=_check_column_mapping)
    strict_metrics: bool = attrs.field(default=False, validator=_check(lambda v: isinstance(v, bool), "true or false"))

    def __attrs_post_init__(self) -> None:
        if self.do_sample and self.temperature == 0:
            raise InvalidValueError("temperature", "0 means greedy decoding, but do_sample is true: set temperature "
                                                   "> 0 to sample, or leave out do_sample")
        if self.base_model is not None and not self.use_lora and self.model_path is not None:
            raise InvalidValueError(
                "base_model",
                "is only used with use_lora=true (an adapter on a base model); a full model in model_path needs none",
            )

    def decoding(self) -> Decoding:
        """Greedy unless sampling is asked for; temperature 0 is greedy (AlignTune 0.x's `temperature=0.0`)."""
        if self.temperature == 0:
            return Decoding(do_sample=False, temperature=None, top_p=None, top_k=None)
        sample = self.do_sample
        if sample is None:
            sample = self.temperature is not None or self.top_p is not None or self.top_k is not None
        if not sample:
            return Decoding(do_sample=False, temperature=None, top_p=None, top_k=None)
        return Decoding(do_sample=True, temperature=1.0 if self.temperature is None else float(self.temperature),
                        top_p=1.0 if self.top_p is None else float(self.top_p), top_k=self.top_k)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, source: str | None = None,
                     lines: Mapping[str, int] | None = None) -> EvalConfig:
        """From YAML: AlignTune 0.x names are translated first, so errors still name the file, line and key.
        `dataset_name` is required here (a file cannot pass a dataset object)."""
        lines = lines or {}

        def where(key: str) -> str:
            if source and key in lines:
                return f"{source}, line {lines[key]}, key {key!r}"
            return f"{source}, key {key!r}" if source else f"option {key!r}"

        try:
            translated = translate_options(cls, values, lines, where=where)
        except InvalidValueError as exc:
            raise ConfigError(f"{where(exc.key)}: {exc.detail}") from None
        return config_from_mapping(cls, translated.values, source=source, lines=translated.lines,
                                   required=("output_dir", "dataset_name"), docs="docs/evaluation.md")

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)
