"""`aligntune_run.json`: how a model was trained, written next to it so evaluation can read it back."""

from __future__ import annotations

import json
import platform
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from aligntune.core.config import TrainConfig

RUN_FILE = "aligntune_run.json"
_VERSIONED = ("aligntune", "torch", "transformers", "trl", "peft", "datasets", "accelerate", "unsloth")


def _versions() -> dict[str, str]:
    out = {}
    for name in _VERSIONED:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    out["python"] = platform.python_version()
    return out


def build_run_record(config: TrainConfig, *, backend_details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "format": 1,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "algorithm": config.algorithm,
        "backend": config.backend,
        "model_name": config.model_name,
        "reference_model": None if config.reference_free else config.model_name,
        "reference_free": config.reference_free,
        "loss_type": config.loss_type,
        "loss_weights": config.loss_weights,
        "loss_params": dict(config.loss_params),
        "beta": config.beta,
        "label_smoothing": config.label_smoothing,
        "use_lora": config.use_lora,
        "base_model": config.model_name if config.use_lora else None,
        "dataset": {
            "name": config.dataset_name,
            "config": config.dataset_config,
            "split": config.split,
            "data_files": config.data_files,
            "max_samples": config.max_samples,
        },
        "tokenization": {"max_seq_length": config.max_seq_length, "max_prompt_length": config.max_prompt_length},
        "config": config.to_dict(),
        "versions": _versions(),
        **(backend_details or {}),
    }


def write_run_record(directory: str | Path, record: dict[str, Any]) -> Path:
    path = Path(directory) / RUN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def read_run_record(directory: str | Path) -> dict[str, Any] | None:
    path = Path(directory) / RUN_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))
