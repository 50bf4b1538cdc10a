"""Reading training/eval options from YAML files and `--set key=value` overrides, keeping line numbers.

Numbers are read the way people write them: PyYAML follows YAML 1.1, where `5e-6` and `1E-5` are strings (a float
needs a dot there); here they are floats, as in YAML 1.2 and JSON. A key given twice is an error naming both lines.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from aligntune.errors import ConfigError

# YAML 1.2 / JSON floats that YAML 1.1 leaves as strings: exponents without a dot (5e-6, 1E-5, -2e+3).
_EXPONENT_FLOAT = re.compile(r"^[-+]?[0-9]+[eE][-+]?[0-9]+$")


class DuplicateKeyError(yaml.MarkedYAMLError):
    """A mapping that names the same key twice."""


class OptionsLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` with YAML 1.2 exponent floats and duplicate keys refused."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise DuplicateKeyError(
                    problem=f"key {key!r} is given twice (lines {seen[key]} and {line}); keep one",
                    problem_mark=key_node.start_mark,
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


OptionsLoader.yaml_implicit_resolvers = {key: list(value) for key, value in yaml.SafeLoader.yaml_implicit_resolvers.items()}
OptionsLoader.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789"))


def parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=OptionsLoader)  # noqa: S506  (a SafeLoader subclass)


def load_yaml_options(path: str | Path) -> tuple[dict[str, Any], dict[str, int]]:
    """Read a YAML mapping of options; returns the values and the 1-based line of each top-level key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}, line {line}: not UTF-8 text (byte {exc.object[exc.start]:#04x}); save the file "
                          "as UTF-8") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory; give a YAML file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        node = yaml.compose(text, Loader=OptionsLoader)
        values = parse_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        place = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{place}: invalid YAML: {problem}") from None
    if values is None:
        return {}, {}
    if not isinstance(values, dict) or not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{path}: the config must be a mapping of option: value, got {type(values).__name__}")
    lines = {key_node.value: key_node.start_mark.line + 1 for key_node, _ in node.value}
    return values, lines


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse `key=value` (value read as YAML; dotted keys reach into mappings: `training_args.warmup_steps=0.1`)."""
    if "=" not in text:
        raise ConfigError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set expects key=value, got {text!r}")
    try:
        value = parse_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: cannot parse value {raw!r}: {exc}") from None
    return key.split("."), value


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    out = dict(values)
    for text in overrides:
        path, value = parse_override(text)
        target = out
        for part in path[:-1]:
            existing = target.get(part)
            if existing is None:
                existing = {}
            elif not isinstance(existing, dict):
                raise ConfigError(f"--set {'.'.join(path)}: {part!r} is not a mapping")
            target[part] = dict(existing)
            target = target[part]
        target[path[-1]] = value
    return out
