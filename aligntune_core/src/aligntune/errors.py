"""User-facing errors.

Every error a user can cause derives from `AlignTuneError`: the CLI prints its message (no traceback) and exits 2.
Messages say what is wrong, where, and what to do.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class AlignTuneError(Exception):
    """An error caused by input the user can fix; its message is meant to be shown as is.

    `exit_code` is what the CLI exits with: 2 for a bad input, other codes for a run that stopped (see below)."""

    exit_code = 2


class ConfigError(AlignTuneError, ValueError):
    """A configuration value is invalid."""


class RunRecordError(ConfigError):
    """A run record (`aligntune_run.json`) cannot be used: a newer format, a broken schema, or a key that the work
    at hand needs is missing. The message names the file, the key and the backend (and version) that wrote it."""


class UnknownOptionError(AlignTuneError, TypeError):
    """An option name is not known (a misspelt keyword argument or YAML key)."""


class DataError(AlignTuneError, ValueError):
    """A dataset cannot be read or does not have the expected shape."""


class PluginError(AlignTuneError):
    """A plugin could not be loaded, is missing, unavailable or conflicts with another one."""


class UnknownPluginError(PluginError, LookupError):
    """No installed plugin provides the requested name."""


class PluginConflictError(PluginError):
    """Two plugins provide the same name."""


class BackendUnavailableError(PluginError):
    """A backend is installed but cannot run here (for example its library is not importable)."""


class BackendContractError(PluginError):
    """A backend's trainer lacks what aligntune relies on (`aligntune.plugins.BackendTrainer`): a bug in that
    plugin, named in the message."""


class OutputDirError(AlignTuneError):
    """The output directory holds another run, is in use by another process, or cannot be used."""


class ResumeError(AlignTuneError):
    """A run cannot be resumed: no complete checkpoint, or a checkpoint of a different configuration."""


class NonFiniteError(AlignTuneError):
    """Training stopped because a loss, a gradient norm or the weights stopped being finite numbers."""

    exit_code = 3


class TrainingInterrupted(AlignTuneError):
    """Training was stopped by SIGINT/SIGTERM (Ctrl-C, a pre-empted job); a checkpoint was saved to resume from."""

    exit_code = 130


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ` Did you mean 'x'?` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""
