"""`aligntune_run.json`: how a model was trained, written next to it so evaluation can read it back."""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from aligntune.core.config import TrainConfig
from aligntune.core.model_paths import resolved_path
from aligntune.errors import ConfigError

RUN_FILE = "aligntune_run.json"
_VERSIONED = ("aligntune-core", "torch", "transformers", "trl", "peft", "datasets", "accelerate", "unsloth")


def _versions() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in _VERSIONED:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    out["python"] = platform.python_version()
    from aligntune.plugins import list_plugins

    out["plugins"] = {p.name: p.version for p in list_plugins() if p.status == "ok"}
    return out


def build_run_record(config: TrainConfig, *, backend_details: dict[str, Any] | None = None) -> dict[str, Any]:
    model = resolved_path(config.model_name)
    return {
        "format": 1,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "algorithm": config.algorithm,
        "backend": config.backend,
        "model_name": model,
        "model_name_given": config.model_name,
        "reference_model": None if config.reference_free else model,
        "reference_free": config.reference_free,
        "loss_type": config.loss_type,
        "loss_weights": config.loss_weights,
        "loss_params": dict(config.loss_params),
        "beta": config.beta,
        "label_smoothing": config.label_smoothing,
        "use_lora": config.use_lora,
        "base_model": model if config.use_lora else None,
        "dataset": {
            "name": config.dataset_name or "mixture: " + " + ".join(entry["name"] for entry in config.datasets),
            "config": config.dataset_config,
            "split": config.split,
            "data_files": config.data_files,
            "max_samples": config.max_samples,
        },
        # A mixture: each entry as given (what each contributed is in data.train.adapter.mixture).
        **({"datasets": [dict(entry) for entry in config.datasets]} if config.datasets else {}),
        "tokenization": {"max_seq_length": config.max_seq_length, "max_prompt_length": config.max_prompt_length,
                         "max_completion_length": config.max_completion_length},
        "config": config.to_dict(),
        "versions": _versions(),
        **(backend_details or {}),
    }


def write_run_record(directory: str | Path, record: dict[str, Any]) -> Path:
    """Write the record atomically: a reader (or a crash) never sees half of it."""
    path = Path(directory) / RUN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{RUN_FILE}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(temporary, path)
    return path


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
