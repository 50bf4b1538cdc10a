"""Plugin discovery and the registry of everything plugins provide.

Entry points of the `aligntune` group are loaded one at a time: a plugin that fails to import is recorded as
`failed` with its error, and everything else keeps working (`ALIGNTUNE_STRICT_PLUGINS=1` makes it fatal).
`ALIGNTUNE_DISABLE_PLUGINS=dist1,dist2` blocks plugins by distribution name. Built-ins register through the same
manager as third-party plugins.
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import os
import traceback
from collections.abc import Iterable
from types import ModuleType
from typing import Any

import attrs
import pluggy
import structlog

from aligntune.errors import PluginConflictError, PluginError
from aligntune.plugins import hookspecs
from aligntune.plugins.records import KINDS, BackendSpec

log = structlog.get_logger("aligntune.plugins")

ENTRY_POINT_GROUP = "aligntune"
STRICT_ENV = "ALIGNTUNE_STRICT_PLUGINS"
DISABLE_ENV = "ALIGNTUNE_DISABLE_PLUGINS"

# Built-in plugin modules of the core, registered like any other plugin.
BUILTIN_MODULES = ("aligntune.losses.builtin", "aligntune.data.custom", "aligntune.eval.builtin")


@attrs.define
class PluginInfo:
    """One installed plugin (a distribution's entry point, or the core's built-ins) and what it provides."""

    name: str
    version: str
    status: str  # ok | failed | blocked | unavailable | conflict
    provides: dict[str, list[str]] = attrs.field(factory=lambda: {kind: [] for kind in KINDS})
    error: str | None = None
    entry_point: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "status": self.status,
            "provides": {kind: list(names) for kind, names in self.provides.items()},
            "error": self.error,
        }


@attrs.frozen
class Provided:
    """A record together with the plugin that provided it."""

    record: Any
    plugin: PluginInfo


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _disabled_distributions() -> set[str]:
    raw = os.environ.get(DISABLE_ENV, "")
    return {_normalise(name) for name in raw.split(",") if name.strip()}


def _normalise(dist_name: str) -> str:
    return dist_name.strip().lower().replace("_", "-").replace(".", "-")


def _short_error(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


class PluginRegistry:
    """Loads plugins and collects their records, keeping track of which plugin provided what."""

    def __init__(self, *, strict: bool | None = None, entry_points: Iterable[metadata.EntryPoint] | None = None):
        self.strict = _truthy(os.environ.get(STRICT_ENV)) if strict is None else strict
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self.plugins: list[PluginInfo] = []
        self._infos_by_registration: dict[str, PluginInfo] = {}
        self._register_builtins()
        self._load_entry_points(entry_points)
        self._pm.check_pending()
        self._records: dict[str, dict[str, list[Provided]]] = self._collect()

    # -- loading -------------------------------------------------------------------------------------------------

    def _register(self, module: ModuleType, registration_name: str, info: PluginInfo) -> None:
        self._pm.register(module, name=registration_name)
        self._infos_by_registration[registration_name] = info
        self.plugins.append(info)

    def _register_builtins(self) -> None:
        from aligntune import __version__

        info = PluginInfo(name="aligntune", version=__version__, status="ok", entry_point="(built-in)")
        for module_name in BUILTIN_MODULES:
            module = importlib.import_module(module_name)
            self._pm.register(module, name=f"aligntune:{module_name}")
            self._infos_by_registration[f"aligntune:{module_name}"] = info
        self.plugins.append(info)

    def _load_entry_points(self, entry_points: Iterable[metadata.EntryPoint] | None) -> None:
        if entry_points is None:
            entry_points = metadata.entry_points(group=ENTRY_POINT_GROUP)
        disabled = _disabled_distributions()
        for ep in sorted(entry_points, key=lambda e: (e.dist.name if e.dist else "", e.name)):
            dist_name = ep.dist.name if ep.dist else ep.name
            dist_version = ep.dist.version if ep.dist else "unknown"
            info = PluginInfo(name=dist_name, version=dist_version, status="ok", entry_point=f"{ep.name} = {ep.value}")
            registration_name = f"{dist_name}:{ep.name}"
            if _normalise(dist_name) in disabled:
                info.status = "blocked"
                info.error = f"blocked by {DISABLE_ENV}"
                self._pm.set_blocked(registration_name)
                self.plugins.append(info)
                continue
            try:
                module = ep.load()
            except Exception as exc:  # any import-time failure of a third-party plugin
                if self.strict:
                    raise PluginError(
                        f"plugin {dist_name} {dist_version} (entry point {info.entry_point}) failed to import: "
                        f"{_short_error(exc)}. Unset {STRICT_ENV} to skip broken plugins, or block it with "
                        f"{DISABLE_ENV}={dist_name}."
                    ) from exc
                info.status = "failed"
                info.error = _short_error(exc)
                log.warning("plugin failed to import; skipped", plugin=dist_name, error=info.error)
                self.plugins.append(info)
                continue
            try:
                self._register(module, registration_name, info)
            except pluggy.PluginValidationError as exc:
                raise PluginError(f"plugin {dist_name} {dist_version} implements a hook wrongly: {exc}") from exc

    # -- collecting ----------------------------------------------------------------------------------------------

    def _collect(self) -> dict[str, dict[str, list[Provided]]]:
        collected: dict[str, dict[str, list[Provided]]] = {kind: {} for kind in KINDS}
        for kind, record_type in KINDS.items():
            hook = getattr(self._pm.hook, f"aligntune_{kind}")
            for impl in hook.get_hookimpls():
                info = self._infos_by_registration[impl.plugin_name]
                try:
                    records = list(impl.function() or ())
                    for record in records:
                        if not isinstance(record, record_type):
                            raise TypeError(
                                f"hook aligntune_{kind} yielded {type(record).__name__}, expected {record_type.__name__}"
                            )
                except Exception as exc:
                    if self.strict:
                        raise PluginError(f"plugin {info.name} {info.version} failed in aligntune_{kind}: {exc}") from exc
                    info.status = "failed"
                    info.error = _short_error(exc)
                    log.warning("plugin hook failed; skipped", plugin=info.name, hook=f"aligntune_{kind}", error=info.error)
                    continue
                for record in records:
                    collected[kind].setdefault(record.name, []).append(Provided(record, info))
                    info.provides[kind].append(record.name)
                    if isinstance(record, BackendSpec) and not record.available and info.status == "ok":
                        info.status = "unavailable"
                        info.error = f"backend {record.name!r}: {record.unavailable_reason}"
        for kind, by_name in collected.items():
            for name, providers in by_name.items():
                if len(providers) > 1:
                    for provided in providers:
                        provided.plugin.status = "conflict"
                        provided.plugin.error = self._conflict_message(kind, name, providers)
        return collected

    @staticmethod
    def _conflict_message(kind: str, name: str, providers: list[Provided]) -> str:
        who = " and ".join(f"{p.plugin.name} {p.plugin.version}" for p in providers)
        return (
            f"conflicting plugins: {kind[:-1].replace('_', ' ')} {name!r} is provided by {who}. "
            f"Uninstall one of them, or block one with {DISABLE_ENV}=<distribution>."
        )

    # -- lookups -------------------------------------------------------------------------------------------------

    def names(self, kind: str) -> list[str]:
        return sorted(self._records[kind])

    def providers(self, kind: str, name: str) -> list[Provided]:
        return self._records[kind].get(name, [])

    def lookup(self, kind: str, name: str) -> Provided | None:
        providers = self.providers(kind, name)
        if len(providers) > 1:
            raise PluginConflictError(self._conflict_message(kind, name, providers))
        return providers[0] if providers else None

    def records(self, kind: str) -> list[Any]:
        out = []
        for name in self.names(kind):
            provided = self.lookup(kind, name)
            assert provided is not None
            out.append(provided.record)
        return out
