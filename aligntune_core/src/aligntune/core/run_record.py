"""`aligntune_run.json` on disk: written atomically, read back as JSON (a corrupt file is named with its line and
column). What it holds is typed in `aligntune.runs.record` (`RunRecord`, `load_run_record`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aligntune.atomic import write_json_atomic
from aligntune.errors import ConfigError

RUN_FILE = "aligntune_run.json"


def write_run_record(directory: str | Path, record: dict[str, Any]) -> Path:
    """Write the record atomically (`aligntune.atomic`): a reader, or a crash, never sees half of it."""
    path = Path(directory) / RUN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_json_atomic(path, record)


def read_run_record(directory: str | Path) -> dict[str, Any] | None:
    path = Path(directory) / RUN_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a run record (not UTF-8 text: {exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}, line {exc.lineno}, column {exc.colno}: not a valid run record ({exc.msg}); it may have been cut "
            "short or edited. Restore it from a checkpoint-N folder of the same run, or give the settings it held "
            "(beta, reference_model_path) explicitly."
        ) from None
    if not isinstance(record, dict):
        raise ConfigError(f"{path}: not a run record (expected a JSON object, got {type(record).__name__})")
    return record
