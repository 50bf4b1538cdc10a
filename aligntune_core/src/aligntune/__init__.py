"""aligntune: preference fine-tuning (DPO) with pluggable losses, backends and datasets.

Importing this package is cheap: torch, transformers and datasets are imported only by the modules that use them.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("aligntune-core")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
