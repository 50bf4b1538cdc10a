"""Reference log-probs cached on disk, keyed by the reference weights, the tokenized data and the settings.

Precomputing the reference log-probs once frees the reference model for training; caching them on disk lets later
epochs and later runs skip the reference pass altogether. Any change to the weights, the token ids, the truncation
or the precision gives a different key, so a stale cache is never read.
"""

from __future__ import annotations

import hashlib
import json
import os
from array import array
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import structlog
import torch

log = structlog.get_logger("aligntune.ref_cache")

FORMAT = 1


def default_cache_dir() -> Path:
    root = os.environ.get("ALIGNTUNE_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "aligntune"
    return Path(root) / "ref-logps"


def model_fingerprint(model: torch.nn.Module, *, skip: Iterable[str] = ("lora_",)) -> str:
    """A digest of the parameters that compute the reference (adapter weights excluded: the reference runs with
    adapters disabled)."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(type(model).__name__.encode())
    for name, parameter in sorted(model.named_parameters(), key=lambda item: item[0]):
        if any(marker in name for marker in skip):
            continue
        tensor = parameter.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def data_fingerprint(rows: Iterable[Mapping[str, Any]]) -> str:
    digest = hashlib.blake2b(digest_size=20)
    for row in rows:
        for key in ("prompt_ids", "chosen_ids", "rejected_ids"):
            values = row[key]
            digest.update(len(values).to_bytes(4, "little"))
            digest.update(array("q", values).tobytes())
    return digest.hexdigest()


def cache_key(*, model: str, data: str, settings: Mapping[str, Any]) -> str:
    payload = json.dumps({"format": FORMAT, "model": model, "data": data, "settings": dict(settings)}, sort_keys=True)
    return hashlib.blake2b(payload.encode(), digest_size=16).hexdigest()


def load(directory: Path, key: str) -> tuple[list[float], list[float]] | None:
    path = Path(directory) / f"{key}.pt"
    if not path.is_file():
        return None
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
        return stored["chosen"].tolist(), stored["rejected"].tolist()
    except Exception as exc:  # a truncated or foreign file: recompute, never fail the run over a cache
        log.warning("ignoring unreadable reference log-prob cache", path=str(path), error=str(exc))
        return None


def save(directory: Path, key: str, chosen: torch.Tensor, rejected: torch.Tensor, meta: Mapping[str, Any]) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{key}.pt"
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save({"chosen": chosen.float().cpu(), "rejected": rejected.float().cpu()}, partial)
    partial.replace(path)  # atomic: a reader never sees half a file
    (directory / f"{key}.json").write_text(json.dumps(dict(meta), indent=2, default=str) + "\n", encoding="utf-8")
    return path
