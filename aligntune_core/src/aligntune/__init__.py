"""aligntune: preference fine-tuning (DPO) with pluggable losses, backends and datasets.

    from aligntune import create_rl_trainer, run_eval, EvalConfig

Importing this package is cheap: the names above are imported on first use (PEP 562), and torch, transformers and
datasets only by the modules that do the work, so plugin discovery (`aligntune plugins list`) imports none of them.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("aligntune-core")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

# Public name -> the module that defines it.
_LAZY = {
    "create_rl_trainer": "aligntune.core.backend_factory",
    "TrainConfig": "aligntune.core.config",
    "run_eval": "aligntune.eval.core",
    "EvalConfig": "aligntune.eval.core",
    "hookimpl": "aligntune.plugins",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:
    from aligntune.core.backend_factory import create_rl_trainer
    from aligntune.core.config import TrainConfig
    from aligntune.eval.core import EvalConfig, run_eval
    from aligntune.plugins import hookimpl


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'aligntune' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # imported once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
