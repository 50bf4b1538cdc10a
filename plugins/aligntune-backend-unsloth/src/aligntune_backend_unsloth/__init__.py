"""aligntune plugin: the `unsloth` training backend.

Discovery stays light: availability is judged from installed metadata (is unsloth installed, do the installed torch,
transformers, trl and datasets satisfy its pins, is the CPU fallback disabled on a machine without a GPU). Unsloth
itself is imported when the backend is used, before transformers and trl.
"""

from __future__ import annotations

import importlib.metadata as metadata
import importlib.util
import os
from collections.abc import Iterator

from aligntune.plugins import BackendSpec, hookimpl, lazy

# Packages whose versions unsloth pins and that the rest of the stack shares.
_PINNED = ("torch", "transformers", "trl", "datasets")


def _version_conflicts() -> list[str]:
    try:
        from packaging.requirements import Requirement
    except ImportError:  # packaging ships with pip-installed transformers; without it skip the check
        return []
    try:
        unsloth_version = metadata.version("unsloth")
        requirements = metadata.requires("unsloth") or []
    except metadata.PackageNotFoundError:
        return []
    conflicts = []
    for text in requirements:
        requirement = Requirement(text)
        if requirement.name.lower() not in _PINNED:
            continue
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        try:
            installed = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            conflicts.append(f"{requirement.name} is not installed")
            continue
        if not requirement.specifier.contains(installed.split("+")[0], prereleases=True):
            conflicts.append(
                f"unsloth {unsloth_version} requires {requirement.name}{requirement.specifier} but "
                f"{requirement.name} {installed} is installed"
            )
    return conflicts


def _has_nvidia_device() -> bool:
    return any(os.path.exists(path) for path in ("/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg"))


def unavailable_reason() -> str | None:
    if importlib.util.find_spec("unsloth") is None:
        return ("unsloth is not installed: install it in its own environment with the versions it pins "
                "(pip install unsloth; docs/backends.md)")
    conflicts = _version_conflicts()
    if conflicts:
        return "; ".join(conflicts) + " (install the versions unsloth supports, e.g. in a separate environment)"
    fallback_disabled = os.environ.get("UNSLOTH_DISABLE_CPU_FALLBACK", "").strip().lower() in {"1", "true", "yes"}
    if fallback_disabled and not _has_nvidia_device():
        return "no GPU found and UNSLOTH_DISABLE_CPU_FALLBACK=1 forbids unsloth's CPU fallback"
    return None


@hookimpl
def aligntune_backends() -> Iterator[BackendSpec]:
    yield BackendSpec(
        name="unsloth",
        summary="Unsloth FastLanguageModel (LoRA/QLoRA) with aligntune's losses and log-probs",
        create_trainer=lazy("aligntune_backend_unsloth.backend:create_trainer"),
        unavailable_reason=unavailable_reason(),
        load_model=lazy("aligntune_backend_unsloth.backend:load_model"),
    )
