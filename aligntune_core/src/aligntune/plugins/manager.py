"""Plugin discovery and the registry of everything plugins provide.

Each entry point of the `aligntune` group is loaded and validated on its own: importing it, its hook names and
signatures, calling its hooks and checking the records they yield. Anything that goes wrong — an exception, even
`SystemExit` or another `BaseException` (only `KeyboardInterrupt` passes through) — marks that one plugin `failed`
with a one-line reason, and everything else keeps working (`ALIGNTUNE_STRICT_PLUGINS=1` makes it a `PluginError`).

`ALIGNTUNE_DISABLE_PLUGINS=dist1,dist2` blocks plugins by distribution name; `ALIGNTUNE_ALLOW_PLUGINS=dist1,dist2`
loads only the third-party distributions it names. The core's built-ins always load, through the same manager.

Two plugins providing the same name block only that name, and only when it is asked for (`lookup` raises
`PluginConflictError`); the plugins are listed as `conflict` and every other name keeps resolving.
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import inspect
import os
from collections.abc import Iterable
from typing import Any

import attrs
import pluggy
import structlog

from aligntune.errors import PluginConflictError, PluginError, did_you_mean
from aligntune.plugins import hookspecs
from aligntune.plugins.records import KINDS, BackendSpec

log = structlog.get_logger("aligntune.plugins")

ENTRY_POINT_GROUP = "aligntune"
STRICT_ENV = "ALIGNTUNE_STRICT_PLUGINS"
DISABLE_ENV = "ALIGNTUNE_DISABLE_PLUGINS"
ALLOW_ENV = "ALIGNTUNE_ALLOW_PLUGINS"

CORE_DISTRIBUTION = "aligntune-core"

# Built-in plugin modules of the core, registered like any other plugin.
BUILTIN_MODULES = ("aligntune.losses.builtin", "aligntune.data.custom", "aligntune.eval.builtin")

# Hook name -> the kind of record it yields.
HOOKS: dict[str, str] = {f"aligntune_{kind}": kind for kind in KINDS}

KIND_WORDS: dict[str, str] = {
    "backends": "backend",
    "losses": "loss",
    "dataset_adapters": "dataset adapter",
    "metrics": "metric",
    "judges": "judge",
}


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

    def add_problem(self, status: str, message: str) -> None:
        """Set `status` and append `message` to the (one-line) error."""
        self.status = status
        self.error = message if not self.error else f"{self.error}; {message}"


@attrs.frozen
class Provided:
    """A record together with the plugin that provided it."""

    record: Any
    plugin: PluginInfo


class PluginDefect(Exception):
    """Something wrong with a plugin found while validating it; the message is one line for the user."""


# -- small helpers -------------------------------------------------------------------------------------------------


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _normalise(dist_name: str) -> str:
    return dist_name.strip().lower().replace("_", "-").replace(".", "-")


def _distribution_list(env: str) -> set[str]:
    raw = os.environ.get(env, "")
    return {_normalise(name) for name in raw.split(",") if name.strip()}


def _disabled_distributions() -> set[str]:
    return _distribution_list(DISABLE_ENV)


def _allowed_distributions() -> set[str] | None:
    """The allow-list, or None when `ALIGNTUNE_ALLOW_PLUGINS` is not set (set but empty allows no third party)."""
    if ALLOW_ENV not in os.environ:
        return None
    return _distribution_list(ALLOW_ENV)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def describe_exception(exc: BaseException) -> str:
    """A one-line description of an exception raised by plugin code."""
    if isinstance(exc, PluginDefect):
        return _one_line(str(exc))
    if isinstance(exc, SystemExit):
        return f"SystemExit: called sys.exit({'' if exc.code is None else repr(exc.code)})"
    detail = _one_line(str(exc))
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def _required_parameters(function: Any) -> list[str]:
    """Parameters that must be passed to call `function` (hooks are called with none)."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # no introspectable signature: calling it will tell
        return []
    positional_or_keyword = (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )
    return [
        p.name for p in signature.parameters.values() if p.kind in positional_or_keyword and p.default is p.empty
    ]


def _entry_point_dist(ep: metadata.EntryPoint) -> tuple[str, str]:
    """(distribution name, version) of an entry point; the entry point's name when it has no distribution."""
    dist = ep.dist
    name = (dist.name if dist is not None else None) or ep.name
    version = (dist.version if dist is not None else None) or "unknown"
    return name, version


class PluginRegistry:
    """Loads plugins and collects their records, keeping track of which plugin provided what."""

    def __init__(self, *, strict: bool | None = None, entry_points: Iterable[metadata.EntryPoint] | None = None):
        self.strict = _truthy(os.environ.get(STRICT_ENV)) if strict is None else strict
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self.plugins: list[PluginInfo] = []
        self._records: dict[str, dict[str, list[Provided]]] = {kind: {} for kind in KINDS}
        self._register_builtins()
        self._load_entry_points(entry_points)
        self._mark_conflicts()

    # -- loading -------------------------------------------------------------------------------------------------

    def _register_builtins(self) -> None:
        from aligntune import __version__

        info = PluginInfo(name=CORE_DISTRIBUTION, version=__version__, status="ok", entry_point="(built-in)")
        for module_name in BUILTIN_MODULES:
            try:
                module = importlib.import_module(module_name)
                records = self._register_and_collect(module, f"{CORE_DISTRIBUTION}:{module_name}")
            except PluginDefect as exc:
                raise PluginError(
                    f"built-in plugin module {module_name} is broken: {exc}. This is a bug in aligntune."
                ) from exc
            self._add_records(info, records)
        self.plugins.append(info)

    def _load_entry_points(self, entry_points: Iterable[metadata.EntryPoint] | None) -> None:
        if entry_points is None:
            entry_points = metadata.entry_points(group=ENTRY_POINT_GROUP)
        ordered = sorted(entry_points, key=lambda ep: (_entry_point_dist(ep)[0], ep.name))
        self._warn_unknown_allowed(ordered)
        for ep in ordered:
            self._load_entry_point(ep)

    def _warn_unknown_allowed(self, entry_points: list[metadata.EntryPoint]) -> None:
        allowed = _allowed_distributions()
        if not allowed:
            return
        installed = {_normalise(_entry_point_dist(ep)[0]) for ep in entry_points} | {CORE_DISTRIBUTION}
        for name in sorted(allowed - installed):
            log.warning(f"{ALLOW_ENV} names a distribution with no aligntune plugin installed", distribution=name)

    def _load_entry_point(self, ep: metadata.EntryPoint) -> None:
        dist_name, dist_version = _entry_point_dist(ep)
        info = PluginInfo(name=dist_name, version=dist_version, status="ok", entry_point=f"{ep.name} = {ep.value}")
        self.plugins.append(info)
        registration_name = f"{dist_name}:{ep.name}"
        blocked = self._block_reason(dist_name)
        if blocked is not None:
            info.add_problem("blocked", blocked)
            self._pm.set_blocked(registration_name)
            return
        try:
            plugin = ep.load()
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - a plugin must not take aligntune down, even with sys.exit()
            self._fail(info, f"failed to import: {describe_exception(exc)}", exc)
            return
        try:
            records = self._register_and_collect(plugin, registration_name)
        except PluginDefect as exc:
            self._fail(info, f"is invalid: {describe_exception(exc)}", exc)
            return
        self._add_records(info, records)

    @staticmethod
    def _block_reason(dist_name: str) -> str | None:
        normalised = _normalise(dist_name)
        if normalised in _disabled_distributions():
            return f"blocked by {DISABLE_ENV}"
        allowed = _allowed_distributions()
        if allowed is not None and normalised not in allowed:
            return f"not in {ALLOW_ENV}"
        return None

    def _fail(self, info: PluginInfo, reason: str, exc: BaseException) -> None:
        where = f"entry point '{info.entry_point}'"
        if self.strict:
            raise PluginError(
                f"plugin {info.name} {info.version} ({where}) {reason}. Unset {STRICT_ENV} to skip broken plugins, "
                f"or block it with {DISABLE_ENV}={info.name}."
            ) from exc
        info.add_problem("failed", f"{where} {reason} (skip it with {DISABLE_ENV}={info.name})")
        log.warning("plugin failed; skipped", plugin=info.name, entry_point=info.entry_point, error=reason)

    # -- validating one plugin -----------------------------------------------------------------------------------

    def _register_and_collect(self, plugin: Any, registration_name: str) -> dict[str, list[Any]]:
        """Validate `plugin`, register it and call its hooks; raises `PluginDefect` and leaves nothing registered."""
        try:
            self._check_hookimpls(plugin)
            if self._pm.get_plugin(registration_name) is not None or self._pm.is_registered(plugin):
                raise PluginDefect("is already registered (two entry points load the same object)")
            self._pm.register(plugin, name=registration_name)
            try:
                return self._collect_from(registration_name)
            except BaseException:
                self._pm.unregister(name=registration_name)
                raise
        except KeyboardInterrupt:
            raise
        except PluginDefect:
            raise
        except pluggy.PluginValidationError as exc:
            raise PluginDefect(f"implements a hook wrongly: {describe_exception(exc)}") from exc
        except BaseException as exc:  # noqa: BLE001 - e.g. a module attribute that raises when read
            raise PluginDefect(f"could not be registered: {describe_exception(exc)}") from exc

    def _check_hookimpls(self, plugin: Any) -> None:
        """Every attribute marked `@hookimpl` must name an aligntune hook and take no arguments."""
        problems: list[str] = []
        for attribute in dir(plugin):
            opts = self._pm.parse_hookimpl_opts(plugin, attribute)
            if opts is None:
                continue
            hook_name = opts.get("specname") or attribute
            if hook_name not in HOOKS:
                if not opts.get("optionalhook"):
                    problems.append(
                        f"{attribute} is not an aligntune hook.{did_you_mean(hook_name, HOOKS)} "
                        f"(hooks: {', '.join(HOOKS)})"
                    )
                continue
            if opts.get("wrapper") or opts.get("hookwrapper"):
                problems.append(f"{attribute} is a hook wrapper; aligntune hooks must yield records")
            required = _required_parameters(getattr(plugin, attribute))
            if required:
                problems.append(f"{attribute}({', '.join(required)}) takes arguments; aligntune hooks take none")
        if problems:
            raise PluginDefect("; ".join(problems))

    def _collect_from(self, registration_name: str) -> dict[str, list[Any]]:
        records: dict[str, list[Any]] = {kind: [] for kind in KINDS}
        for hook_name, kind in HOOKS.items():
            hook = getattr(self._pm.hook, hook_name)
            for impl in hook.get_hookimpls():
                if impl.plugin_name == registration_name:
                    records[kind].extend(self._call_hook(hook_name, impl.function, KINDS[kind]))
            self._check_unique(kind, records[kind])
        return records

    @staticmethod
    def _call_hook(hook_name: str, function: Any, record_type: type) -> list[Any]:
        try:
            result = function()
            if isinstance(result, record_type):
                raise PluginDefect(f"{hook_name} returned one {record_type.__name__}; yield records or return a list")
            records = list(result) if result is not None else []
        except KeyboardInterrupt:
            raise
        except PluginDefect:
            raise
        except BaseException as exc:  # noqa: BLE001 - SystemExit, GeneratorExit, ... in a hook fail that plugin only
            raise PluginDefect(f"{hook_name} raised {describe_exception(exc)}") from exc
        for record in records:
            if not isinstance(record, record_type):
                raise PluginDefect(
                    f"{hook_name} yielded {type(record).__name__} {record!r:.60}, expected {record_type.__name__}"
                )
            try:
                attrs.validate(record)  # also records built with validators off, or through attrs.evolve
            except Exception as exc:
                raise PluginDefect(f"{hook_name} yielded an invalid record: {describe_exception(exc)}") from exc
        return records

    @staticmethod
    def _check_unique(kind: str, records: list[Any]) -> None:
        seen: set[str] = set()
        for record in records:
            if record.name in seen:
                raise PluginDefect(f"aligntune_{kind} yields {KIND_WORDS[kind]} {record.name!r} twice")
            seen.add(record.name)

    # -- collecting ----------------------------------------------------------------------------------------------

    def _add_records(self, info: PluginInfo, records: dict[str, list[Any]]) -> None:
        for kind, kind_records in records.items():
            for record in kind_records:
                self._records[kind].setdefault(record.name, []).append(Provided(record, info))
                info.provides[kind].append(record.name)
                if isinstance(record, BackendSpec) and not record.available:
                    info.add_problem("unavailable", f"backend {record.name!r}: {record.unavailable_reason}")

    def _mark_conflicts(self) -> None:
        for kind, by_name in self._records.items():
            for name, providers in by_name.items():
                if len(providers) > 1:
                    message = self._conflict_message(kind, name, providers)
                    for plugin in {id(p.plugin): p.plugin for p in providers}.values():
                        plugin.add_problem("conflict", message)
                    log.warning("conflicting plugins", kind=kind, name=name, message=message)

    @staticmethod
    def _conflict_message(kind: str, name: str, providers: list[Provided]) -> str:
        who = " and ".join(f"{p.plugin.name} {p.plugin.version}" for p in providers)
        third_party = sorted({p.plugin.name for p in providers if p.plugin.name != CORE_DISTRIBUTION})
        block = " or ".join(f"{DISABLE_ENV}={dist}" for dist in third_party)
        message = (
            f"conflicting plugins: {KIND_WORDS[kind]} {name!r} is provided by {who}, so it cannot be used "
            "(other names still work). Uninstall one of them"
        )
        return f"{message}, or block one with {block}." if block else f"{message}."

    # -- lookups -------------------------------------------------------------------------------------------------

    def names(self, kind: str) -> list[str]:
        return sorted(self._records[kind])

    def providers(self, kind: str, name: str) -> list[Provided]:
        return list(self._records[kind].get(name, []))

    def all_provided(self, kind: str) -> list[Provided]:
        """Every record of `kind` with its plugin, conflicting names included (by name, then load order)."""
        return [provided for name in self.names(kind) for provided in self._records[kind][name]]

    def lookup(self, kind: str, name: str) -> Provided | None:
        """The single provider of `name`; raises `PluginConflictError` when several plugins provide it."""
        providers = self.providers(kind, name)
        if len(providers) > 1:
            raise PluginConflictError(self._conflict_message(kind, name, providers))
        return providers[0] if providers else None
