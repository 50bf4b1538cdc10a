"""`create_rl_trainer`: the documented entry point for training.

    from aligntune.core.backend_factory import create_rl_trainer
    trainer = create_rl_trainer(model_name="Qwen/Qwen3-0.6B", dataset_name="Anthropic/hh-rlhf", algorithm="dpo",
                                backend="trl", num_epochs=1, batch_size=4, learning_rate=1e-6, beta=0.1)
    trainer.train()
"""

from __future__ import annotations

from typing import Any

import structlog

from aligntune.core.config import TrainConfig
from aligntune.data.mixture import mixture_label
from aligntune.losses import resolve_loss
from aligntune.plugins import BackendTrainer, get_backend, resolve_dataset_adapter

log = structlog.get_logger("aligntune")


def resolve_config(config: TrainConfig) -> TrainConfig:
    """Check everything that depends on installed plugins before any model is loaded."""
    resolve_loss(config.loss_type, beta=config.beta, label_smoothing=config.label_smoothing, params=config.loss_params,
                 weights=config.loss_weights)
    get_backend(config.backend)
    if config.datasets is None:
        resolve_dataset_adapter(config.dataset_name, config.dataset_adapter)
    for entry in config.datasets or ():
        resolve_dataset_adapter(entry["name"], entry.get("dataset_adapter"))
    return config


def create_trainer_from_config(config: TrainConfig, *, python_api: bool = False) -> BackendTrainer:
    """Check the config against the installed plugins and the output directory, then build the backend's trainer.

    An output directory holding anything else is refused here, before any model is loaded. `python_api=True`: one
    holding another run's checkpoints is let through (with a warning), so that
    `trainer.train(resume_from_checkpoint=True)` can resume it as in HF Trainer; `train()` refuses it otherwise."""
    from aligntune.launch import check_launch
    from aligntune.runs import prepare_run_config

    check_launch(config)  # several processes: the ones running are the ones the config asks for
    resolve_config(config)
    config = resolve_log_format(config)
    config = prepare_run_config(config, allow_resumable=python_api)
    backend = get_backend(config.backend)
    log.info("creating trainer", backend=backend.name, model=config.model_name,
             dataset=config.dataset_name or mixture_label(config.datasets),
             output_dir=config.output_dir,
             loss=config.loss_type, beta=config.beta, reference_free=config.reference_free)
    return check_trainer(backend.create_trainer(config), backend.name)


def check_trainer(trainer: object, backend: str) -> BackendTrainer:
    """`trainer`, if it has every `BackendTrainer` member; else a `BackendContractError` naming the backend's plugin
    (distribution and version) and what the trainer lacks."""
    from aligntune.plugins.trainer_protocol import missing_members

    missing = missing_members(trainer)
    if not missing:
        return trainer  # type: ignore[return-value]  (checked member by member just above)
    from aligntune.errors import BackendContractError
    from aligntune.plugins import registry

    provided = registry().lookup("backends", backend)
    plugin = f"{provided.plugin.name} {provided.plugin.version}" if provided is not None else "an unregistered plugin"
    raise BackendContractError(
        f"backend {backend!r} ({plugin}) returned a {type(trainer).__name__} from create_trainer that lacks "
        f"{', '.join(missing)}: aligntune needs train(resume_from_checkpoint=...), evaluate(), save_model(path), "
        "log_history and config on every backend's trainer (aligntune.plugins.BackendTrainer, "
        "docs/plugins/writing-a-backend.md). This is a bug in that plugin: report it to its authors, or use another "
        "backend (aligntune list-backends).")


def resolve_log_format(config: TrainConfig) -> TrainConfig:
    """The reporting mode as a setting of the run (the backend reads it; nothing reads a process-wide flag): the one
    asked for, which configures logging to match, or the one logging is configured in."""
    import attrs

    from aligntune.logging_setup import configure_logging, json_lines

    active = "json" if json_lines() else "console"
    if config.log_format is None:
        return attrs.evolve(config, log_format=active)
    if config.log_format != active:
        configure_logging(config.log_format)
    return config


def create_rl_trainer(**kwargs: Any) -> BackendTrainer:
    """Build a trainer for preference fine-tuning. See docs/configuration.md for every option.

    AlignTune 0.x keywords (`use_peft`, `config=`, `num_train_epochs`, ...) are accepted: docs/migrating.md.
    Returns the backend's trainer, a `BackendTrainer`: it has `train()`, `evaluate()`, `save_model(path)`,
    `log_history` and `config` (the TRL backend's is also a `transformers.Trainer`).
    """
    from aligntune.core.compat import announce_defaults, translate_options
    from aligntune.core.config import LOG_FORMATS
    from aligntune.logging_setup import configure_logging, ensure_logging

    if kwargs.get("log_format") in LOG_FORMATS:  # asked for: from the first line on (a bad value: the config says)
        configure_logging(kwargs["log_format"])
    else:
        ensure_logging()
    translation = translate_options(kwargs)
    config = TrainConfig.from_mapping(translation.options)
    announce_defaults(translation)
    return create_trainer_from_config(config, python_api=True)


def list_backends() -> list[dict[str, Any]]:
    """Every installed training backend: `{name, available, reason, distribution, version, summary}`."""
    from aligntune.plugins import list_plugins, registry

    versions = {plugin.name: plugin.version for plugin in list_plugins()}
    out = []
    for provided in registry().all_provided("backends"):
        record = provided.record
        out.append({
            "name": record.name,
            "available": record.unavailable_reason is None and provided.plugin.status in ("ok", "unavailable"),
            "reason": record.unavailable_reason or provided.plugin.error,
            "distribution": provided.plugin.name,
            "version": versions.get(provided.plugin.name, provided.plugin.version),
            "summary": record.summary,
        })
    return out


def get_backend_status() -> dict[str, Any]:
    """What `aligntune plugins list` knows about backends, as a mapping: name -> {available, reason, ...}."""
    return {entry["name"]: {key: value for key, value in entry.items() if key != "name"} for entry in list_backends()}
