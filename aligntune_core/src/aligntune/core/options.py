"""Other projects' names for our options, declared on the field they stand for.

A field says who else calls it what: `attrs.field(..., metadata=aliases(num_train_epochs=(TRL, ALIGNTUNE_0X)))`.
Training (`TrainConfig`) and evaluation (`EvalConfig`) options use this one mechanism, so an alias is accepted
wherever the field's own name is (keywords, YAML, `--set`, `from_mapping`) and a new field carries its aliases with
it. What is not a rename (a refused or retired name, a value that means something else, a trainer setting routed into
`training_args`) stays in the compat modules (`aligntune.core.compat`, `aligntune.eval.compat`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import attrs

from aligntune.errors import ConfigError

# Where an alias comes from, said in messages and used to list a project's names (docs/migrating-from-trl.md).
TRL = "TRL"  # DPOConfig, transformers' TrainingArguments, ModelConfig, ScriptArguments
ALIGNTUNE_0X = "AlignTune 0.x"

_METADATA_KEY = "aligntune_aliases"


class InvalidValueError(ConfigError):
    """A bad value for `key`; `detail` says what was expected. Re-raised with the file and line by
    `config_from_mapping`."""

    def __init__(self, key: str, detail: str):
        super().__init__(f"option {key!r}: {detail}")
        self.key = key
        self.detail = detail


@attrs.frozen
class Alias:
    """`name` is what `origins` call the option `option`."""

    name: str
    option: str
    origins: tuple[str, ...]

    def describe(self) -> str:
        whose = " and ".join(f"{origin}'s" for origin in self.origins)
        return f"{self.name} is {whose} name for {self.option}"


def aliases(**names: str | tuple[str, ...]) -> dict[str, dict[str, tuple[str, ...]]]:
    """Field metadata: each keyword is an alias, its value the project (or projects) that use it."""
    return {_METADATA_KEY: {name: (origin,) if isinstance(origin, str) else tuple(origin)
                            for name, origin in names.items()}}


@functools.cache
def alias_table(cls: type) -> dict[str, Alias]:
    """Every alias of the attrs class `cls`: alias -> `Alias`. A clash (an alias that is also a field, or two fields
    claiming one alias) is a mistake in the declarations, said at first use."""
    fields = {field.name for field in attrs.fields(cls)}
    table: dict[str, Alias] = {}
    for field in attrs.fields(cls):
        for name, origins in field.metadata.get(_METADATA_KEY, {}).items():
            if name in fields or name in table:
                other = name if name in fields else table[name].option
                raise TypeError(f"{cls.__name__}.{field.name}: alias {name!r} is already the option {other!r}")
            table[name] = Alias(name=name, option=field.name, origins=origins)
    return table


def names_from(cls: type, origin: str) -> list[str]:
    """The aliases of `cls` that `origin` uses (TRL's names, AlignTune 0.x's)."""
    return [name for name, alias in alias_table(cls).items() if origin in alias.origins]


@attrs.frozen
class Renamed:
    values: dict[str, Any]
    lines: dict[str, int]
    aliases_used: tuple[str, ...]


def rename_aliases(cls: type, values: Mapping[str, Any], lines: Mapping[str, int] | None = None) -> Renamed:
    """`values` with each alias of `cls` renamed to its option (and its YAML line moved with it). An alias given
    together with its option, or two aliases of one option, is an `InvalidValueError` naming the alias."""
    table = alias_table(cls)
    out: dict[str, Any] = {}
    moved = dict(lines or {})
    used: list[str] = []
    for key, value in values.items():
        alias = table.get(key)
        if alias is None:
            out[key] = value
            continue
        same = [name for name in values if name != key and (
            name == alias.option or (name in table and table[name].option == alias.option))]
        if same:
            other = alias.option if alias.option in same else same[0]
            raise InvalidValueError(key, f"options {key!r} and {other!r} are the same option; give one "
                                         f"({alias.describe()})")
        out[alias.option] = value
        used.append(key)
        if key in moved:
            moved[alias.option] = moved.pop(key)
    return Renamed(values=out, lines=moved, aliases_used=tuple(used))
