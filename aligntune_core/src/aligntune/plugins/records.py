"""Typed records that plugins yield from their hooks.

Each record names one thing a plugin provides. Records are frozen attrs classes whose fields are validated (names,
one-line summaries, callables, flags and option dicts), so that a mistake in a plugin fails that plugin when it is
loaded, not when a user asks for it. Callables may be plain functions or `lazy("module:function")`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:  # heavy types only for annotations
    import torch

    from aligntune.core.config import TrainConfig
    from aligntune.data.request import DatasetRequest, PreferenceData
    from aligntune.losses.contract import LossInputs
    from aligntune.plugins.trainer_protocol import BackendTrainer

_NAME = re.compile(r"^[a-z][a-z0-9_\-]*$")


def _valid_name(_instance: object, attribute: attrs.Attribute, value: str) -> None:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError(
            f"plugin record {attribute.name} {value!r} is invalid: use lower-case letters, digits, '_' or '-', "
            "starting with a letter"
        )


def _one_line(_instance: object, attribute: attrs.Attribute, value: str) -> None:
    if not isinstance(value, str) or not value.strip() or "\n" in value:
        raise ValueError(f"plugin record {attribute.name} must be a non-empty single line, got {value!r}")


def _where(instance: object, attribute: attrs.Attribute) -> str:
    # attrs runs validators after every field is set, so the (already validated) name is there.
    return f"{type(instance).__name__} {getattr(instance, 'name', '?')!r}: {attribute.name}"


def _got(value: object) -> str:
    return f"got {type(value).__name__} {value!r:.60}"


def _callable(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if not callable(value):
        raise TypeError(
            f"{_where(instance, attribute)} must be callable (a function, or lazy('module:function')), {_got(value)}"
        )


def _optional_callable(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if value is not None:
        _callable(instance, attribute, value)


def _flag(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{_where(instance, attribute)} must be True or False, {_got(value)}")


def _optional_text(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise TypeError(f"{_where(instance, attribute)} must be None or a non-empty string, {_got(value)}")


def _options(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise TypeError(f"{_where(instance, attribute)} must be a dict of name -> default, {_got(value)}")


def _hub_ids(value: object) -> tuple[str, ...]:
    """Converter for `dataset_names`: a tuple of hub ids (a lone string would become a tuple of characters)."""
    if isinstance(value, str):
        raise TypeError(f"dataset_names must be a tuple of hub ids such as ({value!r},), got the string {value!r}")
    try:
        return tuple(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"dataset_names must be a tuple of hub ids, {_got(value)}") from None


def _hub_id_items(instance: object, attribute: attrs.Attribute, value: tuple[object, ...]) -> None:
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise TypeError(f"{_where(instance, attribute)} must hold non-empty strings, {_got(item)}")


@attrs.frozen
class BackendSpec:
    """A training backend: turns a resolved `TrainConfig` into a trainer.

    `create_trainer` must import its heavy libraries itself, so that discovering the plugin stays cheap; what it
    returns must be a `BackendTrainer` (`aligntune.plugins.trainer_protocol`: `train`, `evaluate`, `save_model`,
    `log_history`, `config`), else using the backend is a `BackendContractError` (docs/plugins/writing-a-backend.md).
    `unavailable_reason` set means the backend is installed but cannot run here; it is shown by
    `aligntune plugins list` and raised when the backend is asked for.
    """

    name: str = attrs.field(validator=_valid_name)
    summary: str = attrs.field(validator=_one_line)
    create_trainer: Callable[[TrainConfig], BackendTrainer] = attrs.field(validator=_callable)
    unavailable_reason: str | None = attrs.field(default=None, validator=_optional_text)
    # Optional: `load_model(path, *, base_model=None, dtype="float32") -> (model, tokenizer)` for evaluation;
    # with `base_model`, `path` is a LoRA adapter to attach to it.
    load_model: Callable[..., Any] | None = attrs.field(default=None, validator=_optional_callable)

    @property
    def available(self) -> bool:
        return self.unavailable_reason is None


@attrs.frozen
class LossSpec:
    """A DPO-family loss: maps per-pair log-probabilities to per-pair losses.

    `fn(inputs: LossInputs) -> torch.Tensor` returns one loss per pair. `requires_reference=False` means the loss
    never reads reference log-probs, so no reference model is loaded or run; `needs_lengths=True` means it reads
    `chosen_lengths`/`rejected_lengths` (completion token counts). `params` names the extra keyword
    parameters the loss accepts (with their defaults); `validate(inputs_params)` may raise `ValueError` with a
    message for the user.
    """

    name: str = attrs.field(validator=_valid_name)
    summary: str = attrs.field(validator=_one_line)
    fn: Callable[[LossInputs], torch.Tensor] = attrs.field(validator=_callable)
    requires_reference: bool = attrs.field(default=True, validator=_flag)
    needs_lengths: bool = attrs.field(default=False, validator=_flag)
    params: dict[str, Any] = attrs.field(factory=dict, validator=_options)
    # (beta, label_smoothing, params)
    validate: Callable[[float, float, dict[str, Any]], None] | None = attrs.field(
        default=None, validator=_optional_callable
    )


@attrs.frozen
class DatasetAdapterSpec:
    """Turns a dataset (hub id or local files) into rows with `prompt`, `chosen` and `rejected`.

    `dataset_names` are the hub ids this adapter handles (matched case-insensitively); an adapter with no names is
    only used when asked for by name (`dataset_adapter=`). `load(request)` imports its heavy libraries itself and
    returns `PreferenceData`. `options` lists the keyword options the adapter accepts, with their defaults.
    `streaming=True` says `load` honours `request.streaming` (returns a `datasets.IterableDataset`).
    """

    name: str = attrs.field(validator=_valid_name)
    summary: str = attrs.field(validator=_one_line)
    load: Callable[[DatasetRequest], PreferenceData] = attrs.field(validator=_callable)
    dataset_names: tuple[str, ...] = attrs.field(default=(), converter=_hub_ids, validator=_hub_id_items)
    options: dict[str, Any] = attrs.field(factory=dict, validator=_options)
    streaming: bool = attrs.field(default=False, validator=_flag)


@attrs.frozen
class MetricSpec:
    """An evaluation metric computed from per-pair evaluation records.

    `compute(context: aligntune.eval.context.EvalContext) -> dict[str, float]` returns the metric's value under its own
    name plus details under `<name>_<detail>` keys (for example `<name>_std`); `needs_generation` tells the
    evaluator to generate a policy and a reference response per prompt and have the judge score them first.
    """

    name: str = attrs.field(validator=_valid_name)
    summary: str = attrs.field(validator=_one_line)
    compute: Callable[[Any], dict[str, float]] = attrs.field(validator=_callable)
    needs_generation: bool = attrs.field(default=False, validator=_flag)


@attrs.frozen
class JudgeSpec:
    """A judge for win rate: scores responses to prompts, higher is better.

    `create(config) -> judge` builds it from the evaluation config (importing heavy libraries there); the judge
    has `score(prompts: list, responses: list[str]) -> list[float]`.
    """

    name: str = attrs.field(validator=_valid_name)
    summary: str = attrs.field(validator=_one_line)
    create: Callable[[Any], Any] = attrs.field(validator=_callable)


# Keyed by the plural noun used in the hook name and in `aligntune plugins list --json`.
KINDS: dict[str, type] = {
    "backends": BackendSpec,
    "losses": LossSpec,
    "dataset_adapters": DatasetAdapterSpec,
    "metrics": MetricSpec,
    "judges": JudgeSpec,
}

# First-party names and the distribution that provides each, for "pip install ..." hints.
FIRST_PARTY: dict[str, dict[str, str]] = {
    "backends": {"trl": "aligntune-backend-trl", "unsloth": "aligntune-backend-unsloth"},
    "dataset_adapters": {"hh-rlhf": "aligntune-data-hh-rlhf", "oasst": "aligntune-data-oasst1"},
    "losses": {},
    "metrics": {},
    "judges": {},
}

# Where each first-party distribution lives in the aligntune repository. None of them is published on the package
# index yet, so an install hint names the checkout path, never `pip install <name>` from an index (an unclaimed name
# there is a dependency-confusion risk: docs/installing.md).
FIRST_PARTY_PATHS: dict[str, str] = {
    "aligntune-core": "./aligntune_core",
    "aligntune-backend-trl": "./plugins/aligntune-backend-trl",
    "aligntune-backend-unsloth": "./plugins/aligntune-backend-unsloth",
    "aligntune-data-hh-rlhf": "./plugins/aligntune-data-hh-rlhf",
    "aligntune-data-oasst1": "./plugins/aligntune-data-oasst1",
    "aligntune-loss-dpop": "./plugins/aligntune-loss-dpop",
}


def install_hint(distribution: str) -> str:
    """The command that installs a first-party distribution, as it works today: from a checkout of the aligntune
    repository (or a wheel built from it), not from the package index, where these names are not published."""
    path = FIRST_PARTY_PATHS.get(distribution)
    if path is None:
        return f"pip install {distribution}"
    return (f"pip install {path} (from a checkout of the aligntune repository, or its wheel; {distribution} is not on "
            "the package index: docs/installing.md)")


# Hub dataset ids handled by first-party dataset plugins (lower case) and the distribution to install.
FIRST_PARTY_DATASETS: dict[str, str] = {
    "anthropic/hh-rlhf": "aligntune-data-hh-rlhf",
    "openassistant/oasst1": "aligntune-data-oasst1",
    "openassistant/oasst2": "aligntune-data-oasst1",
}


def lazy(target: str) -> Callable[..., Any]:
    """A callable that imports `"package.module:function"` on its first call.

    Use it in records so that discovering a plugin does not import its heavy dependencies.
    """
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"lazy() expects 'module:function', got {target!r}")
    loaded: list[Callable[..., Any]] = []

    def call(*args: Any, **kwargs: Any) -> Any:
        if not loaded:
            import importlib

            loaded.append(getattr(importlib.import_module(module_name), attribute))
        return loaded[0](*args, **kwargs)

    call.__name__ = attribute
    call.__qualname__ = attribute
    call.__doc__ = f"Lazily imported {target}."
    return call
