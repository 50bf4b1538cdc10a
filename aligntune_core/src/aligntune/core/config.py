"""The training configuration: one validated, typed record built from keyword arguments or YAML.

Every option of `create_rl_trainer`, the YAML file and `--set` is a field here, under its own name or another
project's name for it, declared on the field (`aligntune.core.options`); TRL trainer settings routed into
`training_args` and refused names are `aligntune.core.compat`'s. Every value is checked by type and range when the
config is built; errors name the key and, for YAML, the file and line.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from aligntune.core.options import ALIGNTUNE_0X, TRL, InvalidValueError, alias_table, aliases, rename_aliases
from aligntune.data.transforms import (
    column_mapping_problem,
    describe_callable,
    processing_fn_problem,
    system_prompt_problem,
)
from aligntune.errors import ConfigError, UnknownOptionError, did_you_mean
from aligntune.data.mixture import mixture_problem
from aligntune.launch import LAUNCHERS, distributed_problem

SUPPORTED_ALGORITHMS = ("dpo",)
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
LOG_FORMATS = ("console", "json")
NONFINITE_POLICIES = ("stop", "skip")


def keyword_checked(cls: type) -> type:
    """Give an attrs class (declared with `init=False`) an `__init__` that accepts the fields' declared aliases and
    whose unknown keywords are `UnknownOptionError`s naming the closest valid one, instead of Python's bare
    TypeError."""
    attrs_init = cls.__attrs_init__
    known = [a.name for a in attrs.fields(cls)]

    def __init__(self, **kwargs: Any) -> None:
        for key in kwargs:
            if key not in known and key not in alias_table(cls):
                raise UnknownOptionError(f"option {key!r}: unknown option.{_suggest(key, [*known, *alias_table(cls)])}")
        attrs_init(self, **rename_aliases(cls, kwargs).values)

    __init__.__doc__ = cls.__doc__
    cls.__init__ = __init__
    return cls


def _suggest(key: str, names: list[str]) -> str:
    """A did-you-mean that never offers the name that was just refused."""
    return did_you_mean(key, [name for name in names if name != key])


def _check(predicate: Callable[[Any], bool], expected: str) -> Callable[[Any, attrs.Attribute, Any], None]:
    def validator(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if not predicate(value):
            raise InvalidValueError(attribute.name, f"must be {expected}, got {value!r}")

    return validator


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    """A finite int or float: `inf` and `nan` (YAML `.inf`, `.nan`) are never a valid setting."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _non_finite_path(value: Any, path: str = "") -> str | None:
    """The dotted path of the first non-finite float inside nested mappings/lists, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return path or "value"
    if isinstance(value, Mapping):
        items = ((f"{path}.{key}" if path else str(key), item) for key, item in value.items())
    elif isinstance(value, (list, tuple)):
        items = ((f"{path}[{index}]", item) for index, item in enumerate(value))
    else:
        return None
    for where, item in items:
        found = _non_finite_path(item, where)
        if found is not None:
            return found
    return None


def _problem(find: Callable[[Any], str | None]) -> Callable[[Any, attrs.Attribute, Any], None]:
    """A validator from a function that says what is wrong with a value (None: nothing)."""
    def validator(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        problem = find(value)
        if problem is not None:
            raise InvalidValueError(attribute.name, problem)

    return validator


def _finite_mapping(kind: str) -> Callable[[Any, attrs.Attribute, Any], None]:
    def validator(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if not isinstance(value, Mapping):
            raise InvalidValueError(attribute.name, f"must be {kind}, got {value!r}")
        found = _non_finite_path(value)
        if found is not None:
            raise InvalidValueError(attribute.name, f"{found} is not a finite number (inf/nan are not valid settings)")

    return validator


def _resume_value(v: Any) -> bool:
    return v is None or isinstance(v, bool) or _non_empty_str(v)


def _positive_int(v: Any) -> bool:
    return _is_int(v) and v > 0


def _optional(pred: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or pred(v)


def _non_empty_str(v: Any) -> bool:
    return isinstance(v, str) and bool(v.strip())


def _str_list(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v)


def _data_files(v: Any) -> bool:
    if v is None or isinstance(v, str):
        return True
    if _str_list(v):
        return True
    return isinstance(v, Mapping) and all(isinstance(k, str) and (isinstance(x, str) or _str_list(x)) for k, x in v.items())


def _loss_names(loss_type: Any) -> list[str]:
    return [loss_type] if isinstance(loss_type, str) else list(loss_type)


# Converters accept a few shapes besides the field's own type; each says which in its signature (the bad-type
# test reads it). Anything else is passed through for the validator to name.

def _report_to(v: str | list[str] | None) -> list[str]:
    if v is None or v == "none":
        return []
    if isinstance(v, str):
        return [v]
    return list(v) if isinstance(v, (list, tuple)) else v


def _path(v: str | os.PathLike[str] | None) -> str | None:
    """A `pathlib.Path` is a directory name too; a number or a list is not (never `str()`-ed into one)."""
    return os.fspath(v) if isinstance(v, os.PathLike) else v


def _loss_type(v: str | list[str]) -> str | list[str]:
    return list(v) if isinstance(v, tuple) else v


def _none_as_empty(v: dict[str, Any] | None) -> dict[str, Any]:
    """`training_args: null` is no extra arguments, as the YAML path has always read it (aligntune.core.compat)."""
    return {} if v is None else v


def _mixture(v: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    if isinstance(v, (list, tuple)) and all(isinstance(entry, Mapping) for entry in v):
        return [dict(entry) for entry in v]
    return v


def config_from_mapping(
    cls: type,
    values: Mapping[str, Any],
    *,
    source: str | None,
    lines: Mapping[str, int] | None,
    required: tuple[str, ...],
    docs: str,
    also_accepted: tuple[str, ...] = (),
):
    """Build the attrs config `cls` from a mapping, with errors that name the key (and file and line).
    `values` hold field names (aliases and compat names are translated before this point); `also_accepted`: other
    names that are accepted there, offered as suggestions too, with the fields' aliases."""
    lines = lines or {}
    known = [a.name for a in attrs.fields(cls)]

    def where(key: str) -> str:
        if source and key in lines:
            return f"{source}, line {lines[key]}, key {key!r}"
        if source:
            return f"{source}, key {key!r}"
        return f"option {key!r}"

    accepted = [*known, *alias_table(cls), *also_accepted]
    for key in values:
        if key not in known:
            raise UnknownOptionError(f"{where(key)}: unknown option.{_suggest(key, accepted)} See {docs} for every "
                                     "option.")
    missing = [k for k in required if k not in values]
    if missing:
        place = f"{source}: " if source else ""
        raise ConfigError(f"{place}missing required option(s): {', '.join(missing)}")
    try:
        return cls(**dict(values))
    except InvalidValueError as exc:
        raise ConfigError(f"{where(exc.key)}: {exc.detail}") from None


@keyword_checked
@attrs.frozen(kw_only=True, init=False)
class TrainConfig:
    """Everything a training run needs. Defaults follow the DPO guide and, where it is silent, TRL's DPOConfig."""

    model_name: str = attrs.field(validator=_check(_non_empty_str, "a model id or a local model directory"),
                                  metadata=aliases(model_name_or_path=TRL, name_or_path=ALIGNTUNE_0X))
    # Required, unless `datasets` gives a mixture.
    dataset_name: str | None = attrs.field(
        default=None, validator=_check(_optional(_non_empty_str), "a dataset id or a local file/directory"))
    algorithm: str = attrs.field(default="dpo", validator=_check(lambda v: isinstance(v, str), "a string ('dpo')"),
                                 metadata=aliases(algo=ALIGNTUNE_0X))
    backend: str = attrs.field(default="trl", validator=_check(_non_empty_str, "a backend name"))
    num_epochs: float = attrs.field(default=1, validator=_check(lambda v: _is_number(v) and v > 0, "a number > 0"),
                                    metadata=aliases(num_train_epochs=(TRL, ALIGNTUNE_0X), epochs=ALIGNTUNE_0X))
    batch_size: int = attrs.field(default=4, validator=_check(_positive_int, "an integer >= 1"),
                                  metadata=aliases(per_device_train_batch_size=(TRL, ALIGNTUNE_0X),
                                                   per_device_batch_size=ALIGNTUNE_0X))
    learning_rate: float = attrs.field(default=1e-6, validator=_check(lambda v: _is_number(v) and v > 0, "a number > 0"))
    beta: float = attrs.field(default=0.1, validator=_check(lambda v: _is_number(v) and v > 0, "a number > 0"))
    max_seq_length: int = attrs.field(default=512, validator=_check(lambda v: _is_int(v) and v >= 2, "an integer >= 2"),
                                      metadata=aliases(max_length=(TRL, ALIGNTUNE_0X)))
    reference_free: bool = attrs.field(default=False, validator=_check(lambda v: isinstance(v, bool), "true or false"))
    label_smoothing: float = attrs.field(
        default=0.0, validator=_check(lambda v: _is_number(v) and 0 <= v < 0.5, "a number in [0, 0.5)")
    )
    loss_type: str | list[str] = attrs.field(
        default="sigmoid",
        converter=_loss_type,
        validator=_check(lambda v: _non_empty_str(v) or (_str_list(v) and len(v) > 0), "a loss name or a list of names"),
    )
    loss_weights: list[float] | None = attrs.field(
        default=None,
        validator=_check(lambda v: v is None or (isinstance(v, (list, tuple)) and all(_is_number(x) for x in v)),
                         "a list of numbers (one per loss_type) or null"),
    )
    loss_params: dict[str, Any] = attrs.field(factory=dict, validator=_finite_mapping("a mapping of loss parameters"))
    # LD-DPO (TRL's `ld_alpha`): completion tokens beyond a pair's shared length count this much, policy and reference.
    ld_alpha: float | None = attrs.field(
        default=None, validator=_check(lambda v: v is None or (_is_number(v) and 0 <= v <= 1),
                                       "a number in [0, 1] (the weight of tokens beyond the shared length) or null"))
    # WPO (TRL's `use_weighting`): each pair's losses weighted by the policy's own probability of the pair.
    use_weighting: bool = attrs.field(default=False, validator=_check(lambda v: isinstance(v, bool), "true or false"))
    # None: a new directory per run, output/<model>-<algorithm>/<timestamp> (see aligntune.runs.output_dir).
    output_dir: str | None = attrs.field(
        default=None, converter=_path,
        validator=_check(_optional(_non_empty_str), "a directory, or null for a new one per run"),
    )
    resume_from_checkpoint: bool | str | None = attrs.field(
        default=None,
        validator=_check(_resume_value, "true (the latest complete checkpoint), 'auto' (resume if there is one), "
                                        "a checkpoint path, or null"),
    )
    force_resume: bool = attrs.field(default=False, validator=_check(lambda v: isinstance(v, bool), "true or false"))
    overwrite_output_dir: bool = attrs.field(
        default=False, validator=_check(lambda v: isinstance(v, bool), "true or false")
    )
    on_nonfinite: str = attrs.field(
        default="stop", validator=_check(lambda v: v in NONFINITE_POLICIES, f"one of {NONFINITE_POLICIES}")
    )
    max_nonfinite_steps: int = attrs.field(
        default=10, validator=_check(lambda v: _is_int(v) and v >= 0, "an integer >= 0")
    )
    save_on_interrupt: bool = attrs.field(
        default=True, validator=_check(lambda v: isinstance(v, bool), "true or false")
    )
    max_steps: int | None = attrs.field(default=None, validator=_check(_optional(_positive_int), "an integer >= 1 or null"))
    gradient_accumulation_steps: int = attrs.field(default=1, validator=_check(_positive_int, "an integer >= 1"))
    max_prompt_length: int | None = attrs.field(
        default=None, validator=_check(_optional(_positive_int), "an integer >= 1 or null")
    )
    max_completion_length: int | None = attrs.field(
        default=None, validator=_check(_optional(_positive_int), "an integer >= 1 or null"),
        metadata=aliases(max_target_length=ALIGNTUNE_0X),
    )
    seed: int = attrs.field(default=42, validator=_check(lambda v: _is_int(v) and 0 <= v < 2**32,
                                                         "an integer in [0, 2**32)"))
    logging_steps: int = attrs.field(default=10, validator=_check(_positive_int, "an integer >= 1"),
                                     metadata=aliases(log_interval=ALIGNTUNE_0X))
    save_steps: int | None = attrs.field(
        default=500, validator=_check(_optional(_positive_int), "an integer >= 1, or null for no intermediate checkpoints"),
        metadata=aliases(save_interval=ALIGNTUNE_0X),
    )
    eval_split: str | None = attrs.field(default=None, validator=_check(_optional(_non_empty_str), "a split name"),
                                         metadata=aliases(dataset_test_split=TRL))
    eval_dataset_name: str | None = attrs.field(
        default=None, validator=_check(_optional(_non_empty_str), "a dataset id or path")
    )
    use_lora: bool | None = attrs.field(
        default=None, validator=_check(lambda v: v is None or isinstance(v, bool), "true, false or null (backend default)"),
        metadata=aliases(use_peft=(TRL, ALIGNTUNE_0X)),
    )
    load_in_4bit: bool | None = attrs.field(
        default=None, validator=_check(lambda v: v is None or isinstance(v, bool), "true, false or null (auto)")
    )
    lora_r: int = attrs.field(default=16, validator=_check(_positive_int, "an integer >= 1"))
    lora_alpha: float = attrs.field(default=32, validator=_check(lambda v: _is_number(v) and v > 0, "a number > 0"))
    lora_dropout: float = attrs.field(
        default=0.05, validator=_check(lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)")
    )
    lora_target_modules: str | list[str] | None = attrs.field(
        default=None, validator=_check(lambda v: v is None or isinstance(v, str) or _str_list(v), "a module name list")
    )
    # None: on where measured faster (the backend decides, says why, and records the value it used).
    precompute_ref_log_probs: bool | None = attrs.field(
        default=None, validator=_check(lambda v: v is None or isinstance(v, bool), "true, false or null (auto)")
    )
    data_files: str | list[str] | dict[str, str | list[str]] | None = attrs.field(
        default=None, validator=_check(_data_files, "a path, a list of paths, or a mapping split -> paths")
    )
    dataset_config: str | None = attrs.field(default=None, validator=_check(_optional(_non_empty_str), "a config name"),
                                             metadata=aliases(config_name=ALIGNTUNE_0X))
    split: str = attrs.field(default="train", validator=_check(_non_empty_str, "a split name"),
                             metadata=aliases(dataset_train_split=TRL))
    max_samples: int | None = attrs.field(default=None, validator=_check(_optional(_positive_int), "an integer >= 1 or null"))
    report_to: list[str] = attrs.field(
        factory=list, converter=_report_to,
        validator=_check(_str_list, "a tracker name (wandb, tensorboard, ...), a list of names, or none"),
    )
    dataset_adapter: str | None = attrs.field(default=None, validator=_check(_optional(_non_empty_str), "an adapter name"))
    dataset_options: dict[str, Any] = attrs.field(factory=dict, validator=_finite_mapping("a mapping of adapter options"))
    column_mapping: dict[str, str] | None = attrs.field(default=None, validator=_problem(column_mapping_problem))
    processing_fn: Callable[..., Any] | str | None = attrs.field(default=None,
                                                                 validator=_problem(processing_fn_problem))
    processing_batched: bool = attrs.field(
        default=False, validator=_check(lambda v: isinstance(v, bool), "true or false")
    )
    processing_fn_kwargs: dict[str, Any] = attrs.field(
        factory=dict, validator=_finite_mapping("a mapping of keyword arguments for processing_fn")
    )
    system_prompt: str | None = attrs.field(default=None, validator=_problem(system_prompt_problem))
    chat_template: str | None = attrs.field(
        default=None, validator=_check(_optional(_non_empty_str), "a Jinja chat template (the text itself)")
    )
    strict_data: bool = attrs.field(default=False, validator=_check(lambda v: isinstance(v, bool), "true or false"))
    streaming: bool = attrs.field(default=False, validator=_check(lambda v: isinstance(v, bool), "true or false"),
                                  metadata=aliases(dataset_streaming=TRL))
    prefix_sharing: bool | None = attrs.field(
        default=None, validator=_check(lambda v: v is None or isinstance(v, bool), "true, false or null (auto)")
    )
    # TRL's padding_free is the same idea (TRL 1.16 turns it off with a warning; here it packs).
    packing: bool | None = attrs.field(
        default=None, validator=_check(lambda v: v is None or isinstance(v, bool), "true, false or null (auto)"),
        metadata=aliases(padding_free=TRL),
    )
    logps_chunk_size: int | str | None = attrs.field(
        default="auto", validator=_check(lambda v: v is None or v == "auto" or _positive_int(v),
                                         "'auto', an integer >= 1 (positions per chunk) or null (no chunks)"))
    ref_logps_cache: bool = attrs.field(default=True, validator=_check(lambda v: isinstance(v, bool), "true or false"))
    ref_logps_cache_dir: str | None = attrs.field(
        default=None, validator=_check(_optional(_non_empty_str), "a directory, or null for the default cache")
    )
    precision: str = attrs.field(default="auto", validator=_check(lambda v: v in PRECISIONS, f"one of {PRECISIONS}"))
    gradient_checkpointing: bool | None = attrs.field(
        default=None, validator=_check(lambda v: v is None or isinstance(v, bool), "true, false or null (backend default)"),
        metadata=aliases(use_gradient_checkpointing=ALIGNTUNE_0X),
    )
    training_args: dict[str, Any] = attrs.field(
        factory=dict, converter=_none_as_empty, validator=_finite_mapping("a mapping of extra trainer arguments")
    )
    # A mixture of datasets instead of dataset_name (aligntune.data.mixture): [{name, split, weight | max_samples}, ...]
    datasets: list[dict[str, Any]] | None = attrs.field(
        default=None, converter=_mixture, validator=_problem(mixture_problem),
    )
    # Several processes (docs/distributed.md): a shipped accelerate config by name, or an accelerate config file.
    distributed: str | None = attrs.field(default=None, validator=_problem(distributed_problem))
    num_processes: int | None = attrs.field(
        default=None, validator=_check(_optional(_positive_int), "an integer >= 1, or null (every GPU of this machine)")
    )
    launcher: str | None = attrs.field(
        default=None, validator=_check(lambda v: v is None or v in LAUNCHERS, f"one of {LAUNCHERS}, or null (accelerate)")
    )
    # How the run reports: console lines with progress bars, or JSON lines only (no progress bars, metrics as events).
    # None: the mode aligntune's logging is configured in (`--log-format`); the trainer is built with the value.
    log_format: str | None = attrs.field(
        default=None, validator=_check(lambda v: v is None or v in LOG_FORMATS, f"one of {LOG_FORMATS}, or null")
    )

    def __attrs_post_init__(self) -> None:
        if self.dataset_name is None and self.datasets is None:
            raise InvalidValueError("dataset_name", "required: a dataset id or a local file/directory (or datasets: "
                                                    "[...] for a mixture)")
        if self.dataset_name is not None and self.datasets is not None:
            raise InvalidValueError("datasets", f"give either dataset_name ({self.dataset_name!r}) or datasets (a "
                                                "mixture), not both: add it to the mixture as {name: ...}")
        if self.datasets is not None:
            for key, value in (("streaming", self.streaming), ("data_files", self.data_files),
                               ("dataset_config", self.dataset_config), ("max_samples", self.max_samples),
                               ("column_mapping", self.column_mapping), ("dataset_adapter", self.dataset_adapter),
                               ("dataset_options", self.dataset_options)):
                if value:
                    where = "streaming is not offered for mixtures" if key == "streaming" else f"{key}: inside each entry"
                    raise InvalidValueError(key, f"applies to dataset_name; with datasets (a mixture) set it per entry "
                                                 f"({where})")
            if self.eval_split is not None and self.eval_dataset_name is None:
                raise InvalidValueError("eval_split", "with datasets (a mixture), name the evaluation data with "
                                                      "eval_dataset_name as well")
        if self.algorithm not in SUPPORTED_ALGORITHMS:
            raise InvalidValueError(
                "algorithm",
                f"{self.algorithm!r} is not supported; supported algorithms: {', '.join(SUPPORTED_ALGORITHMS)}",
            )
        if self.resume_from_checkpoint not in (None, False) and self.overwrite_output_dir:
            raise InvalidValueError(
                "overwrite_output_dir", "cannot be combined with resume_from_checkpoint: resuming continues the run in "
                "output_dir, overwriting deletes it. Choose one."
            )
        if self.force_resume and self.resume_from_checkpoint in (None, False):
            raise InvalidValueError("force_resume", "only applies when resuming: set resume_from_checkpoint as well")
        if self.streaming and self.max_steps is None:
            raise InvalidValueError("streaming", "needs max_steps: a stream has no length, so num_epochs cannot say "
                                                 "how many steps to train")
        if self.streaming and self.precompute_ref_log_probs:
            raise InvalidValueError("streaming", "cannot be combined with precompute_ref_log_probs (that needs a "
                                                 "whole pass over the data before training)")
        if self.max_prompt_length is not None and self.max_prompt_length >= self.max_seq_length:
            raise InvalidValueError(
                "max_prompt_length",
                f"must be smaller than max_seq_length ({self.max_seq_length}) so completions keep some tokens, "
                f"got {self.max_prompt_length}",
            )
        if self.processing_fn is None and (self.processing_batched or self.processing_fn_kwargs):
            raise InvalidValueError("processing_batched" if self.processing_batched else "processing_fn_kwargs",
                                    "only applies with processing_fn: set processing_fn as well, or remove it")
        batch_sorting = sorted({"aot", "aot_unpaired"} & set(_loss_names(self.loss_type)))
        if self.use_weighting and batch_sorting:
            raise InvalidValueError(
                "use_weighting", f"cannot weight {batch_sorting[0]!r} per pair: it sorts log-ratios across the batch, so "
                "its per-pair values belong to no one pair (TRL refuses it too). Choose another loss_type, or "
                "use_weighting: false")
        if self.max_completion_length is not None and self.max_completion_length >= self.max_seq_length:
            raise InvalidValueError(
                "max_completion_length",
                f"must be smaller than max_seq_length ({self.max_seq_length}), which bounds prompt + completion; "
                f"got {self.max_completion_length}",
            )

    # -- construction --------------------------------------------------------------------------------------------

    @classmethod
    def field_names(cls) -> list[str]:
        return [a.name for a in attrs.fields(cls)]

    @classmethod
    def from_mapping(
        cls, values: Mapping[str, Any], *, source: str | None = None, lines: Mapping[str, int] | None = None
    ) -> TrainConfig:
        """Build a config from every name `create_rl_trainer` and `aligntune train` accept (ours, the fields'
        declared aliases, TRL's trainer settings, AlignTune 0.x's layout); unknown keys raise `UnknownOptionError`,
        bad values `ConfigError` naming key and place."""
        from aligntune.core import compat

        # The same names and values as create_rl_trainer and the CLI: translated here too (a no-op on options that
        # are translated already), so this documented entry point never refuses what they accept.
        translation = compat.translate_options(values, lines, source=source)
        values = translation.options
        required = ("model_name",) if "datasets" in values else ("model_name", "dataset_name")
        return config_from_mapping(cls, values, source=source, lines=translation.lines, required=required,
                                   also_accepted=(*compat.TRAINING_ARGS, *compat.MODEL_INIT),
                                   docs="docs/configuration.md")

    def to_dict(self) -> dict[str, Any]:
        values = attrs.asdict(self)
        values["processing_fn"] = describe_callable(self.processing_fn)  # `module:function`, as a file can hold it
        return values

    @property
    def eval_enabled(self) -> bool:
        return self.eval_split is not None or self.eval_dataset_name is not None
