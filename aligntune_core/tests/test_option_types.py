"""Every option is checked by type when a config is read, through the Python API and the CLI alike.

The cases are generated from the config classes' fields: each field gets every value of `CANDIDATES` that its
declared type (or, with a converter, the converter's parameter type) does not admit. A new field without a type
check, or with a type this test cannot read, fails here. Aliases and did-you-mean are checked at the end."""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml

from aligntune.cli import main
from aligntune.core.config import TrainConfig
from aligntune.core.options import ALIGNTUNE_0X, TRL, alias_table, names_from
from aligntune.errors import AlignTuneError, ConfigError, UnknownOptionError
from aligntune.eval.config import EvalConfig

# One value of each shape a YAML file can hold.
CANDIDATES: tuple[Any, ...] = (None, True, 5, 2.5, "x", [1], ["x"], {"a": 1}, {"a": "x"})
BASE = {TrainConfig: {"model_name": "m", "dataset_name": "d"}, EvalConfig: {"output_dir": "o", "dataset_name": "d"}}
COMMAND = {TrainConfig: "train", EvalConfig: "eval"}


def _fits(value: Any, hint: Any) -> bool:
    """Whether `value` is of the type `hint` (ints count as floats; a bool is no number)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is list:
        return isinstance(value, list) and all(_fits(item, args[0]) for item in value)
    if origin is dict:
        return isinstance(value, dict) and all(_fits(k, args[0]) and _fits(v, args[1]) for k, v in value.items())
    if origin is os.PathLike:
        return isinstance(value, os.PathLike)
    if typing.get_origin(hint) is Callable or hint is Callable:
        return callable(value)
    raise AssertionError(f"the type {hint!r} is new to this test: teach _fits what it admits")


def _accepted(cls: type, field: attrs.Attribute) -> Any:
    """What the field takes as input: its converter's parameter type, else its own type."""
    if field.converter is not None:
        hints = typing.get_type_hints(field.converter)
        hints.pop("return", None)
        assert len(hints) == 1, f"{cls.__name__}.{field.name}: annotate the converter's parameter (what it accepts)"
        return next(iter(hints.values()))
    return typing.get_type_hints(cls)[field.name]


def _cases() -> list:
    cases = []
    for cls in (TrainConfig, EvalConfig):
        for field in attrs.fields(cls):
            accepted = _accepted(cls, field)
            for value in CANDIDATES:
                if not _fits(value, accepted):
                    cases.append(pytest.param(cls, field.name, value, id=f"{cls.__name__}.{field.name}={value!r}"))
    return cases


CASES = _cases()


@pytest.mark.parametrize("cls", [TrainConfig, EvalConfig])
def test_every_field_has_a_type_narrower_than_anything_and_a_check(cls):
    for field in attrs.fields(cls):
        assert field.validator is not None, f"{cls.__name__}.{field.name}: give it a validator"
        assert any(not _fits(value, _accepted(cls, field)) for value in CANDIDATES), (
            f"{cls.__name__}.{field.name}: its type admits any value; declare what it takes")


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text, text
    return text


@pytest.mark.parametrize(("cls", "key", "value"), CASES)
def test_a_bad_type_is_refused_naming_the_key(cls, key, value):
    values = {**BASE[cls], key: value}
    with pytest.raises(AlignTuneError) as from_mapping:
        cls.from_mapping(values)
    assert isinstance(from_mapping.value, ConfigError), from_mapping.value
    assert repr(key) in _one_line(from_mapping.value)
    with pytest.raises(ConfigError) as keywords:
        cls(**values)
    assert repr(key) in _one_line(keywords.value)


@pytest.mark.parametrize(("cls", "key", "value"), CASES)
def test_a_bad_type_in_a_yaml_file_exits_2_with_one_line(cls, key, value, tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**BASE[cls], key: value}, sort_keys=False), encoding="utf-8")
    line = next(number for number, text in enumerate(path.read_text().splitlines(), 1) if text.startswith(f"{key}:"))
    code = main([COMMAND[cls], str(path)])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("aligntune: error: ") and f"{path}, line {line}" in err and repr(key) in err, err


def test_the_cli_says_it_in_one_line_in_a_subprocess_too(tmp_path):
    """The in-process cases above, once for real: `aligntune eval` with data_files: 5 (once a raw TypeError)."""
    import subprocess
    import sys

    path = tmp_path / "eval.yaml"
    path.write_text("output_dir: o\ndataset_name: d\ndata_files: 5\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "aligntune", "eval", str(path)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip() == (f"aligntune: error: {path}, line 3, key 'data_files': must be a path, a list of "
                                   "paths, or a mapping split -> paths, got 5")


def test_a_path_is_a_directory_name_and_nothing_else_is():
    assert TrainConfig(model_name="m", dataset_name="d", output_dir=Path("runs/a")).output_dir == "runs/a"
    assert EvalConfig(output_dir=Path("e"), dataset_name="d").output_dir == "e"
    for bad in ([1], {"a": 1}, 5):
        with pytest.raises(ConfigError, match="option 'output_dir': must be a directory"):
            TrainConfig.from_mapping({"model_name": "m", "dataset_name": "d", "output_dir": bad})


# -- aliases --------------------------------------------------------------------------------------------------------


# A value other than the default for each aliased option (the alias's value first, when it is translated).
ALIAS_VALUES = {"model_name": "m2", "algorithm": "dpo", "num_epochs": 2, "batch_size": 8, "max_seq_length": 64,
                "max_completion_length": 8, "logging_steps": 3, "save_steps": 7, "eval_split": "e", "use_lora": True,
                "dataset_config": "c", "split": "s", "streaming": True, "packing": True, "gradient_checkpointing": True,
                "beta": 0.3, "dtype": ("bf16", "bfloat16")}


@pytest.mark.parametrize("cls", [TrainConfig, EvalConfig])
def test_every_alias_is_accepted_by_from_mapping_and_keywords(cls):
    for alias in alias_table(cls).values():
        given, expected = (ALIAS_VALUES[alias.option] if isinstance(ALIAS_VALUES[alias.option], tuple)
                           else (ALIAS_VALUES[alias.option],) * 2)
        values = {**{k: v for k, v in BASE[cls].items() if k != alias.option}, alias.name: given}
        if alias.option == "streaming":
            values["max_steps"] = 5  # a stream has no length
        for config in (cls.from_mapping(values), cls(**values)):
            assert getattr(config, alias.option) == expected, alias


def test_from_mapping_accepts_what_create_rl_trainer_and_the_cli_accept():
    """TRL's and AlignTune 0.x's names, trainer settings and values: the same options as the CLI reads them."""
    config = TrainConfig.from_mapping({"model_name_or_path": "m", "dataset_name": "d", "num_train_epochs": 2,
                                       "per_device_train_batch_size": 8, "warmup_ratio": 0.1, "bf16": True,
                                       "max_steps": -1, "backend": "auto", "trust_remote_code": True})
    assert (config.model_name, config.num_epochs, config.batch_size, config.precision, config.max_steps,
            config.backend) == ("m", 2, 8, "bf16", None, "trl")
    assert config.training_args == {"warmup_steps": 0.1, "model_init_kwargs": {"trust_remote_code": True}}
    with pytest.raises(ConfigError, match="option 'use_dora' \\(TRL ModelConfig\\) is not supported"):
        TrainConfig.from_mapping({"model_name": "m", "dataset_name": "d", "use_dora": True})


@pytest.mark.parametrize(("cls", "typo", "meant"), [
    (TrainConfig, "model_name_or_pth", "model_name_or_path"),
    (TrainConfig, "num_train_epoch", "num_train_epochs"),
    (EvalConfig, "dpo_bta", "dpo_beta"),
])
def test_did_you_mean_offers_aliases_but_never_the_refused_name(cls, typo, meant):
    for build in (cls.from_mapping, lambda values: cls(**values)):
        with pytest.raises(UnknownOptionError) as caught:
            build({**BASE[cls], typo: 1})
        assert f"Did you mean {meant!r}?" in str(caught.value)
    with pytest.raises(UnknownOptionError, match="Did you mean 'warmup_ratio'"):  # a trainer setting (compat)
        TrainConfig.from_mapping({**BASE[TrainConfig], "warmup_ratoi": 0.1})


def test_did_you_mean_never_suggests_the_name_that_was_refused():
    """Once `model_name_or_path` was refused with 'Did you mean model_name_or_path?'; now no name is offered itself."""
    from aligntune.core.config import config_from_mapping

    with pytest.raises(UnknownOptionError) as caught:
        config_from_mapping(TrainConfig, {**BASE[TrainConfig], "warmup_ratio": 0.1}, source=None, lines=None,
                            required=(), docs="docs/configuration.md", also_accepted=("warmup_ratio",))
    assert "Did you mean 'warmup_ratio'" not in str(caught.value)


def test_an_alias_with_its_option_or_another_alias_is_one_option_given_twice():
    with pytest.raises(ConfigError, match="options 'num_train_epochs' and 'epochs' are the same option; give one "
                                          "\\(num_train_epochs is TRL's and AlignTune 0.x's name for num_epochs\\)"):
        TrainConfig.from_mapping({"model_name": "m", "dataset_name": "d", "num_train_epochs": 1, "epochs": 2})
    with pytest.raises(ConfigError, match="options 'model_name_or_path' and 'model_name' are the same option"):
        TrainConfig(model_name="m", model_name_or_path="n", dataset_name="d")


def test_aliases_say_whose_names_they_are():
    assert {"model_name_or_path", "num_train_epochs", "padding_free", "use_peft"} <= set(names_from(TrainConfig, TRL))
    assert "epochs" in names_from(TrainConfig, ALIGNTUNE_0X) and "epochs" not in names_from(TrainConfig, TRL)
    assert set(alias_table(EvalConfig)) == {"max_length", "dpo_beta", "precision"}
