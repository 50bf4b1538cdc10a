"""Reading training/eval options from YAML files and `--set key=value` overrides, keeping line numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from aligntune.errors import ConfigError


def load_yaml_options(path: str | Path) -> tuple[dict[str, Any], dict[str, int]]:
    """Read a YAML mapping of options; returns the values and the 1-based line of each top-level key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        values = yaml.safe_load(text)
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
        value = yaml.safe_load(raw) if raw.strip() else ""
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
