"""The plugin facade: the only way the rest of aligntune reaches plugins.

    from aligntune.plugins import get_backend, get_loss, get_dataset_adapter, get_metric, list_plugins

A plugin that fails to load is listed as `failed` and provides nothing; a name two plugins provide raises
`PluginConflictError` only when it is asked for (see `aligntune.plugins.manager`).
"""

from __future__ import annotations

from pathlib import Path

from aligntune.errors import BackendUnavailableError, DataError, UnknownPluginError
from aligntune.plugins.hookspecs import hookimpl
from aligntune.plugins.manager import PluginInfo, PluginRegistry
from aligntune.plugins.records import (
    FIRST_PARTY,
    FIRST_PARTY_DATASETS,
    BackendSpec,
    DatasetAdapterSpec,
    JudgeSpec,
    LossSpec,
    MetricSpec,
    install_hint,
    lazy,
)
from aligntune.plugins.trainer_protocol import BackendTrainer, TrainOutcome

__all__ = [
    "BackendSpec",
    "BackendTrainer",
    "DatasetAdapterSpec",
    "JudgeSpec",
    "LossSpec",
    "MetricSpec",
    "PluginInfo",
    "TrainOutcome",
    "get_backend",
    "get_dataset_adapter",
    "get_judge",
    "get_loss",
    "get_metric",
    "hookimpl",
    "install_hint",
    "lazy",
    "list_plugins",
    "registry",
    "reset_registry",
    "resolve_dataset_adapter",
]

_registry: PluginRegistry | None = None


def registry() -> PluginRegistry:
    """The process-wide registry, built on first use."""
    global _registry
    if _registry is None:
        _registry = PluginRegistry()
    return _registry


def reset_registry() -> None:
    """Forget the loaded plugins, so the next lookup discovers them again (after installing one, in tests)."""
    global _registry
    _registry = None


_KIND_WORDS = {
    "backends": ("backend", "backend"),
    "losses": ("loss", "loss_type"),
    "dataset_adapters": ("dataset adapter", "dataset_adapter"),
    "metrics": ("metric", "metrics"),
    "judges": ("judge", "judge"),
}


def _unknown(kind: str, name: str) -> UnknownPluginError:
    from aligntune.errors import did_you_mean

    reg = registry()
    available = reg.names(kind)
    word, option = _KIND_WORDS[kind]
    message = f"unknown {word} {name!r} (option {option!r})."
    install = FIRST_PARTY[kind].get(name)
    if install:
        message += f" It is provided by a plugin that is not installed: {install_hint(install)}."
    else:
        message += did_you_mean(name, available)
    message += f" Available: {', '.join(available) if available else 'none installed'}."
    failed = [p for p in reg.plugins if p.status == "failed"]
    if failed:
        message += " Plugins that failed to load: " + "; ".join(f"{p.name} ({p.error})" for p in failed) + "."
    blocked = [p for p in reg.plugins if p.status == "blocked"]
    if blocked:
        message += " Not loaded: " + ", ".join(f"{p.name} ({p.error})" for p in blocked) + "."
    return UnknownPluginError(message)


def _get(kind: str, name: str):
    provided = registry().lookup(kind, name)
    if provided is None:
        raise _unknown(kind, name)
    return provided.record


def get_backend(name: str) -> BackendSpec:
    """The backend called `name`; raises if it is unknown or cannot run here (with the reason)."""
    spec: BackendSpec = _get("backends", name)
    if not spec.available:
        raise BackendUnavailableError(f"backend {name!r} is installed but unavailable: {spec.unavailable_reason}")
    return spec


def get_loss(name: str) -> LossSpec:
    return _get("losses", name)


def get_dataset_adapter(name: str) -> DatasetAdapterSpec:
    return _get("dataset_adapters", name)


def get_metric(name: str) -> MetricSpec:
    return _get("metrics", name)


def get_judge(name: str) -> JudgeSpec:
    return _get("judges", name)


GENERIC_ADAPTER = "preference"


def resolve_dataset_adapter(dataset_name: str, adapter: str | None = None) -> DatasetAdapterSpec:
    """The adapter for `dataset_name`: the one named by `adapter`, else one that claims the hub id, else the
    generic `preference` adapter (local files, or hub datasets that already have prompt/chosen/rejected columns)."""
    if adapter is not None:
        return get_dataset_adapter(adapter)
    if Path(dataset_name).expanduser().exists():
        # The user's own file or directory: no plugin may take it over by listing its path as a dataset name.
        return get_dataset_adapter(GENERIC_ADAPTER)
    key = dataset_name.strip().lower()
    # Only adapters that claim this dataset matter: a name conflict between unrelated adapters must not block it.
    claimed = sorted(
        {
            provided.record.name
            for provided in registry().all_provided("dataset_adapters")
            if key in {known.lower() for known in provided.record.dataset_names}
        }
    )
    if len(claimed) > 1:
        raise DataError(
            f"dataset {dataset_name!r} is claimed by several adapters ({', '.join(claimed)}); "
            "choose one with dataset_adapter=..."
        )
    if claimed:
        return get_dataset_adapter(claimed[0])  # raises PluginConflictError if two plugins provide that name
    if key in FIRST_PARTY_DATASETS:
        raise UnknownPluginError(
            f"dataset {dataset_name!r} needs its own loader, which is not installed: "
            f"{install_hint(FIRST_PARTY_DATASETS[key])}"
        )
    return get_dataset_adapter(GENERIC_ADAPTER)


def dataset_adapter_provenance(name: str) -> dict[str, str]:
    """Which distribution (and version) provides the dataset adapter `name`, for the run record."""
    provided = registry().lookup("dataset_adapters", name)
    if provided is None:
        return {"name": name}
    return {"name": name, "distribution": provided.plugin.name, "version": provided.plugin.version}


def list_plugins() -> list[PluginInfo]:
    return list(registry().plugins)
