"""Checkpoints a run can be resumed from.

A checkpoint folder (`checkpoint-N`, written by the trainer) counts as complete only once its marker
`aligntune_checkpoint.json` exists: the marker is written last, atomically (`aligntune.atomic`), and holds
the run's configuration fingerprint. A folder without it was being written when the process died, or was not
written by aligntune; it is skipped with a warning.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import attrs
import structlog

from aligntune.atomic import write_json_atomic  # re-exported: backends write the marker with it
from aligntune.core.run_record import RUN_FILE
from aligntune.errors import ResumeError

log = structlog.get_logger("aligntune.runs")

MARKER = "aligntune_checkpoint.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")

__all__ = ["MARKER", "RUN_FILE", "Checkpoint", "latest_complete_checkpoint", "list_checkpoints", "write_json_atomic"]


@attrs.frozen
class Checkpoint:
    path: Path
    step: int
    marker: dict[str, Any] | None

    @property
    def complete(self) -> bool:
        return self.marker is not None


def read_marker(folder: Path) -> dict[str, Any] | None:
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and "fingerprint" in marker else None


def list_checkpoints(output_dir: str | Path) -> list[Checkpoint]:
    """Every `checkpoint-N` folder, oldest first, complete or not."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = []
    for entry in output_dir.iterdir():
        match = _CHECKPOINT.match(entry.name)
        if match and entry.is_dir():
            found.append(Checkpoint(path=entry, step=int(match.group(1)), marker=read_marker(entry)))
    return sorted(found, key=lambda c: c.step)


def latest_complete_checkpoint(
    output_dir: str | Path, *, warn: bool = True
) -> tuple[Checkpoint | None, list[Checkpoint]]:
    """The newest complete checkpoint, and the incomplete ones newer than it (skipped)."""
    skipped = []
    for checkpoint in reversed(list_checkpoints(output_dir)):
        if checkpoint.complete:
            return checkpoint, skipped
        skipped.append(checkpoint)
        if warn:
            log.warning("skipping an incomplete checkpoint (it was being written when the run stopped)",
                        checkpoint=str(checkpoint.path), hint=f"it has no {MARKER}")
    return None, skipped


def differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """`key: saved -> current` for each setting that differs."""
    implied = {"processes": 1}  # a fingerprint names the number of processes only when there are several
    keys = sorted(set(saved) | set(current))
    before = {key: saved.get(key, implied.get(key)) for key in keys}
    after = {key: current.get(key, implied.get(key)) for key in keys}
    return [f"{key}: {before[key]!r} -> {after[key]!r}" for key in keys if before[key] != after[key]]


def resolve_resume_checkpoint(
    output_dir: str | Path, requested: bool | str | None, *, fingerprint: dict[str, Any], force: bool
) -> Checkpoint | None:
    """The checkpoint to resume from (None: start from step 0), checked against this run's fingerprint."""
    if requested in (None, False):
        return None
    if requested in (True, "latest", "auto") or (Path(str(requested)).is_dir() and not
                                                 _CHECKPOINT.match(Path(str(requested)).name)):
        directory = Path(output_dir) if requested in (True, "latest", "auto") else Path(str(requested))
        checkpoint, skipped = latest_complete_checkpoint(directory)
        if checkpoint is None:
            if requested == "auto":
                return None
            note = f" ({len(skipped)} incomplete checkpoint(s) skipped)" if skipped else ""
            raise ResumeError(
                f"nothing to resume in {directory}: it has no complete checkpoint{note}. Start a new run without "
                "--resume, or give the checkpoint to resume from."
            )
    else:
        path = Path(str(requested)).expanduser()
        match = _CHECKPOINT.match(path.name)
        if not path.is_dir() or not match:
            raise ResumeError(f"resume_from_checkpoint {str(requested)!r}: not a checkpoint folder (checkpoint-N)")
        checkpoint = Checkpoint(path=path, step=int(match.group(1)), marker=read_marker(path))
        if not checkpoint.complete:
            if not force:
                raise ResumeError(
                    f"{path} is not a complete aligntune checkpoint (no {MARKER}: it was being written when the run "
                    "stopped, or another tool wrote it). Resume from the latest complete one with --resume, or add "
                    "--force-resume (force_resume: true) to use it anyway."
                )
            log.warning("resuming from a checkpoint without a completion marker (forced)", checkpoint=str(path))
            return checkpoint
    assert checkpoint is not None and checkpoint.marker is not None
    saved = checkpoint.marker["fingerprint"]
    if saved.get("digest") != fingerprint["digest"]:
        changed = differences(saved.get("values", {}), fingerprint["values"])
        listing = "; ".join(changed) or "(the settings recorded in the checkpoint could not be compared)"
        if not force:
            raise ResumeError(
                f"{checkpoint.path} belongs to a run with different settings: {listing}. Resuming would train a "
                "model that neither configuration describes. Resume with the original settings, start a new run in "
                "another output_dir, or add --force-resume (force_resume: true) to resume anyway."
            )
        log.warning("resuming a checkpoint of different settings (forced)", checkpoint=str(checkpoint.path),
                    changed=changed)
    return checkpoint
