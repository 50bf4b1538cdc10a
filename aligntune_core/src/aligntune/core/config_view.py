"""`trainer.config`: the run's resolved `TrainConfig`, read-only, with AlignTune 0.x's nested sections beside it.

AlignTune 0.x scripts read their trainer's config as a nested object: `trainer.config.algo.value`,
`trainer.config.model.name_or_path`, `trainer.config.train.beta`, `trainer.config.train.per_device_batch_size`,
`trainer.config.datasets[0].name`, `trainer.config.logging.output_dir`. The view answers those from the one flat
config (so they can never disagree with what trains) and every flat name as well (`trainer.config.beta`).
docs/migrating.md lists the sections.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from aligntune.core.config import TrainConfig

Getter = Callable[[TrainConfig], Any]


def _field(name: str) -> Getter:
    return lambda config: getattr(config, name)


def _training_arg(name: str) -> Getter:
    """A trainer setting given through `training_args` (None when not given: the trainer's own default applies,
    and a view built with the trainer's arguments reads that instead)."""
    return lambda config: config.training_args.get(name)


def _model_init(name: str, default: Any) -> Getter:
    return lambda config: (config.training_args.get("model_init_kwargs") or {}).get(name, default)


# AlignTune 0.x's section -> its attribute name -> how our config answers it.
MODEL: dict[str, Getter] = {
    "name_or_path": _field("model_name"),
    "backend": _field("backend"),
    "precision": _field("precision"),
    "use_peft": _field("use_lora"),
    "lora_r": _field("lora_r"),
    "lora_alpha": _field("lora_alpha"),
    "lora_dropout": _field("lora_dropout"),
    "lora_target_modules": _field("lora_target_modules"),
    "max_seq_length": _field("max_seq_length"),
    "gradient_checkpointing": _field("gradient_checkpointing"),
    "quantization": lambda config: {"load_in_4bit": True} if config.load_in_4bit else {},
    "trust_remote_code": _model_init("trust_remote_code", False),
    "attn_implementation": _model_init("attn_implementation", None),
    "device_map": _model_init("device_map", None),
    "model_init_kwargs": lambda config: dict(config.training_args.get("model_init_kwargs") or {}),
    "disable_dropout": _training_arg("disable_dropout"),
}
TRAIN: dict[str, Getter] = {
    "per_device_batch_size": _field("batch_size"),
    "per_device_eval_batch_size": lambda config: config.training_args.get("per_device_eval_batch_size",
                                                                           config.batch_size),
    "gradient_accumulation_steps": _field("gradient_accumulation_steps"),
    "max_steps": _field("max_steps"),
    "epochs": _field("num_epochs"),
    "learning_rate": _field("learning_rate"),
    "beta": _field("beta"),
    "loss_type": _field("loss_type"),
    "loss_weights": _field("loss_weights"),
    "label_smoothing": _field("label_smoothing"),
    "reference_free": _field("reference_free"),
    "ld_alpha": _field("ld_alpha"),
    "use_weighting": _field("use_weighting"),
    "max_length": _field("max_seq_length"),
    "max_prompt_length": _field("max_prompt_length"),
    "max_completion_length": _field("max_completion_length"),
    "max_target_length": _field("max_completion_length"),
    "save_steps": _field("save_steps"),
    "save_interval": _field("save_steps"),
    "logging_steps": _field("logging_steps"),
    "seed": _field("seed"),
    "precompute_ref_log_probs": _field("precompute_ref_log_probs"),
    "discopop_tau": lambda config: config.loss_params.get("discopop_tau"),
    "weight_decay": _training_arg("weight_decay"),
    "warmup_steps": _training_arg("warmup_steps"),
    "max_grad_norm": _training_arg("max_grad_norm"),
    "lr_scheduler": _training_arg("lr_scheduler_type"),
    "optimizer": _training_arg("optim"),
    "eval_steps": _training_arg("eval_steps"),
    "eval_strategy": _training_arg("eval_strategy"),
    "save_total_limit": _training_arg("save_total_limit"),
    "data_seed": _training_arg("data_seed"),
}
# Of those, the ones the trainer's arguments hold (their field names): read there when the view has them, so the
# value is the one that trains, defaults included.
FROM_TRAINER_ARGS = {"weight_decay": "weight_decay", "warmup_steps": "warmup_steps", "max_grad_norm": "max_grad_norm",
                     "lr_scheduler": "lr_scheduler_type", "optimizer": "optim", "eval_steps": "eval_steps",
                     "eval_strategy": "eval_strategy", "save_total_limit": "save_total_limit",
                     "data_seed": "data_seed", "per_device_eval_batch_size": "per_device_eval_batch_size",
                     "disable_dropout": "disable_dropout"}
DATASET: dict[str, Getter] = {
    "name": _field("dataset_name"),
    "split": _field("split"),
    "config_name": _field("dataset_config"),
    "max_samples": _field("max_samples"),
    "column_mapping": lambda config: dict(config.column_mapping or {}),
    "system_prompt": _field("system_prompt"),
    "chat_template": _field("chat_template"),
    "processing_fn": _field("processing_fn"),
    "processing_batched": _field("processing_batched"),
    "processing_fn_kwargs": _field("processing_fn_kwargs"),
    "weight": lambda config: 1.0,
}
LOGGING: dict[str, Getter] = {
    "output_dir": _field("output_dir"),
    "report_to": lambda config: ",".join(config.report_to) or "none",
    "loggers": lambda config: list(config.report_to),
    "run_name": _training_arg("run_name"),
}


class Algorithm(str):
    """`trainer.config.algo`: the algorithm name; `.value` as AlignTune 0.x's enum has it."""

    @property
    def value(self) -> str:
        return str(self)


class _ReadOnly:
    """Attribute access that never changes the run: assignment raises, as on the frozen config."""

    def __setattr__(self, name: str, value: Any) -> None:
        raise attrs.exceptions.FrozenInstanceError()

    def __delattr__(self, name: str) -> None:
        raise attrs.exceptions.FrozenInstanceError()


class Section(_ReadOnly):
    """One AlignTune 0.x section (`model`, `train`, a dataset, `logging`) read from the flat config."""

    def __init__(self, name: str, getters: Mapping[str, Getter], values: Mapping[str, Any]):
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_values", dict(values) if values else {})
        object.__setattr__(self, "_getters", getters)

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        if attribute in self._values:
            return self._values[attribute]
        raise AttributeError(f"trainer.config.{self._name} has no {attribute!r} (AlignTune 0.x's names here: "
                             f"{', '.join(sorted(self._values))}; every option by its flat name: trainer.config.NAME)")

    def to_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def __repr__(self) -> str:
        return f"{self._name}({', '.join(f'{k}={v!r}' for k, v in self._values.items())})"


def _section(name: str, getters: Mapping[str, Getter], config: TrainConfig, args: Any = None) -> Section:
    values = {key: get(config) for key, get in getters.items()}
    if args is not None:
        for key in values.keys() & FROM_TRAINER_ARGS.keys():
            value = getattr(args, FROM_TRAINER_ARGS[key], values[key])
            values[key] = getattr(value, "value", value)  # transformers' enums (lr_scheduler_type, eval_strategy)
    return Section(name, getters, values)


class ConfigView(_ReadOnly):
    """The run's `TrainConfig`, read-only: its fields by name, and AlignTune 0.x's sections (`algo`, `model`,
    `datasets`, `train`, `logging`). With `trainer_args` (the trainer's `TrainingArguments`), trainer settings left
    at their defaults read as the trainer resolved them."""

    def __init__(self, config: TrainConfig, trainer_args: Any = None):
        object.__setattr__(self, "_config", config)
        object.__setattr__(self, "_args", trainer_args)

    @property
    def flat(self) -> TrainConfig:
        """The `TrainConfig` itself."""
        return self._config

    @property
    def algo(self) -> Algorithm:
        return Algorithm(self._config.algorithm)

    @property
    def model(self) -> Section:
        return _section("model", MODEL, self._config, self._args)

    @property
    def train(self) -> Section:
        return _section("train", TRAIN, self._config, self._args)

    @property
    def logging(self) -> Section:
        return _section("logging", LOGGING, self._config, self._args)

    @property
    def datasets(self) -> list[Section]:
        """One section per dataset: the dataset, or each entry of a mixture."""
        config = self._config
        if config.datasets is None:
            return [_section("datasets[0]", DATASET, config)]
        sections = []
        for index, entry in enumerate(config.datasets):
            values = {key: get(config) for key, get in DATASET.items()}
            values.update(name=entry["name"], split=entry.get("split", "train"), config_name=entry.get("config"),
                          max_samples=entry.get("max_samples"), weight=entry.get("weight", 1.0),
                          column_mapping=dict(entry.get("column_mapping") or {}))
            sections.append(Section(f"datasets[{index}]", DATASET, values))
        return sections

    def to_dict(self) -> dict[str, Any]:
        return self._config.to_dict()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._config, name)  # a misspelt name: the config's own AttributeError

    def __eq__(self, other: object) -> bool:
        return self._config == (other._config if isinstance(other, ConfigView) else other)

    def __hash__(self) -> int:
        return hash(self._config)

    def __repr__(self) -> str:
        return f"ConfigView({self._config!r})"
