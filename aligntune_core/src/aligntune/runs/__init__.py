"""The run lifecycle shared by every backend: output directories and their lock, complete checkpoints and
resuming them, the configuration fingerprint, the non-finite guard and stopping on SIGINT/SIGTERM.

Backends call these; see docs/runs.md for what users see.
"""

from aligntune.runs.checkpoints import (
    MARKER,
    Checkpoint,
    latest_complete_checkpoint,
    list_checkpoints,
    resolve_resume_checkpoint,
    write_json_atomic,
)
from aligntune.runs.fingerprint import resolved_path, run_fingerprint, stream_source_digest
from aligntune.runs.guard import NonFiniteGuard, NonFiniteStop
from aligntune.runs.interrupt import InterruptRequests
from aligntune.runs.output_dir import (
    LOCK_FILE,
    OutputDirLock,
    check_not_locked,
    prepare_output_dir,
    prepare_run_config,
    resolve_output_dir,
)

__all__ = [
    "LOCK_FILE",
    "MARKER",
    "Checkpoint",
    "InterruptRequests",
    "NonFiniteGuard",
    "NonFiniteStop",
    "OutputDirLock",
    "check_not_locked",
    "latest_complete_checkpoint",
    "list_checkpoints",
    "prepare_output_dir",
    "prepare_run_config",
    "resolve_output_dir",
    "resolve_resume_checkpoint",
    "resolved_path",
    "run_fingerprint",
    "stream_source_digest",
    "write_json_atomic",
]
