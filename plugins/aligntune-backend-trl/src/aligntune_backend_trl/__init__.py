"""aligntune plugin: the `trl` training backend.

This module is what the entry point loads; it stays light (no torch/trl import) so plugin discovery is cheap.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

from aligntune.plugins import BackendSpec, hookimpl, install_hint


def _create_trainer(config):
    from aligntune_backend_trl.build import build_trainer

    return build_trainer(config)


def _unavailable_reason() -> str | None:
    missing = [name for name in ("trl", "transformers", "peft", "torch") if importlib.util.find_spec(name) is None]
    if missing:
        return f"not importable: {', '.join(missing)} (reinstall the plugin with its dependencies: " \
               f"{install_hint('aligntune-backend-trl')})"
    return None


@hookimpl
def aligntune_backends() -> Iterator[BackendSpec]:
    yield BackendSpec(
        name="trl",
        summary="TRL DPOTrainer with aligntune's losses and log-probs",
        create_trainer=_create_trainer,
        unavailable_reason=_unavailable_reason(),
    )
