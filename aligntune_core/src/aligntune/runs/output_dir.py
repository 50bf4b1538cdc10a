"""Where a run writes, and making sure it writes there alone.

- `resolve_output_dir`: an explicit `output_dir`, or a new directory per run (`output/<model>-<algorithm>/<time>`);
  resuming without an `output_dir` picks the newest run under that root that has a complete checkpoint.
- `prepare_output_dir`: a directory that holds another run (or anything else) is refused unless the run resumes it
  or `overwrite_output_dir` asks to replace it; replacing removes the old run's checkpoints and model files first.
- `OutputDirLock`: an advisory lock so that a second run on the same directory fails at once, naming the first.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from aligntune.errors import AlignTuneError, OutputDirError, ResumeError
from aligntune.runs.checkpoints import RUN_FILE, latest_complete_checkpoint, list_checkpoints

if TYPE_CHECKING:
    from aligntune.core.config import TrainConfig

log = structlog.get_logger("aligntune.runs")

LOCK_FILE = ".aligntune.lock"
RUN_DIR_TIME_FORMAT = "%Y%m%d-%H%M%S"
# Files a training run writes into its output directory (model or adapter, tokenizer, record, model card).
_RUN_FILE_PATTERNS = (
    "*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin", "adapter_model.bin", "config.json",
    "generation_config.json", "adapter_config.json", "tokenizer*", "special_tokens_map.json", "vocab.json",
    "merges.txt", "chat_template.jinja", "added_tokens.json", "training_args.bin", "README.md", RUN_FILE,
)


def default_run_root(config: TrainConfig) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(str(config.model_name)).name or "model").strip("-") or "model"
    return Path("output") / f"{slug}-{config.algorithm}"


def _new_run_dir(root: Path) -> Path:
    """A directory of its own for a new run: the start time, with a suffix when two runs start in one second."""
    stamp = datetime.now().strftime(RUN_DIR_TIME_FORMAT)
    root.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 1000):
        candidate = root / (stamp if attempt == 1 else f"{stamp}-{attempt}")
        try:
            candidate.mkdir()  # atomic: two processes never get the same directory
        except FileExistsError:
            continue
        return candidate
    raise OutputDirError(f"cannot create a new run directory under {root}: too many runs started this second")


def _newest_resumable_run(root: Path) -> Path | None:
    if not root.is_dir():
        return None
    runs = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.name, reverse=True)
    for run in runs:
        if latest_complete_checkpoint(run, warn=False)[0] is not None:
            return run
    return None


def resolve_output_dir(config: TrainConfig) -> str:
    """The directory this run writes to (created for a new default run)."""
    if config.output_dir is not None:
        return config.output_dir
    resume = config.resume_from_checkpoint
    if isinstance(resume, str) and resume not in ("latest", "auto"):
        path = Path(resume).expanduser()
        # A checkpoint path: continue in the run directory that holds it.
        return str(path.parent if re.fullmatch(r"checkpoint-\d+", path.name) else path)
    root = default_run_root(config)
    if resume not in (None, False):
        found = _newest_resumable_run(root)
        if found is not None:
            log.info("resuming the newest run with a complete checkpoint", output_dir=str(found))
            return str(found)
        if resume != "auto":
            raise ResumeError(
                f"nothing to resume: no run under {root} has a complete checkpoint. Give output_dir (the run to "
                "resume), or start a new run without --resume."
            )
    return str(_new_run_dir(root))


def _entries(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.name != LOCK_FILE)


def _describe(directory: Path, entries: list[Path]) -> str:
    checkpoints = list_checkpoints(directory)
    if (directory / RUN_FILE).is_file() or checkpoints:
        steps = ", ".join(c.path.name for c in checkpoints[-3:])
        return "another training run" + (f" (checkpoints: {steps})" if steps else "")
    names = ", ".join(p.name for p in entries[:5]) + (", ..." if len(entries) > 5 else "")
    return f"other files ({names})"


def prepare_output_dir(directory: str | Path, *, resuming: bool, overwrite: bool) -> None:
    """Refuse to mix two runs in one directory; with `overwrite`, clear the old run's outputs first."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise OutputDirError(f"output_dir {directory} is a file, not a directory: choose another output_dir")
    entries = _entries(directory)
    if resuming or not entries:
        return
    if not overwrite:
        raise OutputDirError(
            f"output_dir {directory} already holds {_describe(directory, entries)}; training into it would mix two "
            "runs. Continue that run with --resume (resume_from_checkpoint: true), replace it with "
            "--overwrite-output-dir (overwrite_output_dir: true), or choose another output_dir (leave it unset for a "
            "new directory per run)."
        )
    clear_previous_run(directory)


def clear_previous_run(directory: Path) -> list[str]:
    """Remove what an earlier run wrote (checkpoints, model, tokenizer, record); keep and name anything else."""
    removed, kept = [], []
    for entry in _entries(directory):
        is_checkpoint = entry.is_dir() and re.fullmatch(r"checkpoint-\d+", entry.name)
        is_run_file = entry.is_file() and any(entry.match(pattern) for pattern in _RUN_FILE_PATTERNS)
        if is_checkpoint:
            shutil.rmtree(entry)
        elif is_run_file:
            entry.unlink()
        else:
            kept.append(entry.name)
            continue
        removed.append(entry.name)
    log.warning("overwrite_output_dir: removed the previous run's outputs", output_dir=str(directory),
                removed=removed, kept=kept or None)
    return removed


def _holder(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}


class OutputDirLock:
    """An advisory lock on an output directory, held while a run trains (released by the OS if it dies)."""

    def __init__(self, directory: str | Path):
        self.path = Path(directory) / LOCK_FILE
        self._handle = None

    def acquire(self) -> OutputDirLock:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks here; the non-empty check still applies
            log.debug("no fcntl on this platform: output_dir is not locked")
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115  (held open while locked)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            holder = _holder(self.path)
            who = (f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"
                   if holder else "another process")
            raise OutputDirError(
                f"output_dir {self.path.parent} is in use by another aligntune run ({who}); two runs in one directory "
                "would overwrite each other's checkpoints. Wait for it to finish, stop it, or choose another "
                "output_dir."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                 "command": " ".join(sys.argv)}))
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is not None:
            import fcntl

            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> OutputDirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def check_not_locked(directory: str | Path) -> None:
    """Fail now (before any model is loaded) when another run holds the directory."""
    if (Path(directory) / LOCK_FILE).exists():
        OutputDirLock(directory).acquire().release()


def check_writable_dir(directory: Path, *, hint: str = "choose another output_dir",
                       error: type[AlignTuneError] = OutputDirError) -> None:
    """`directory` exists (created if needed) and can be written: checked before any long work starts."""
    if directory.exists() and not directory.is_dir():
        raise error(f"output_dir {directory} is a file, not a directory: {hint}")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise error(f"output_dir {directory}: cannot create it ({exc.strerror or exc}); {hint}") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise error(f"output_dir {directory}: not writable by this user; {hint}")


def prepare_run_config(config: TrainConfig, *, check_contents: bool = True,
                       allow_resumable: bool = False) -> TrainConfig:
    """Fix the run's output directory and check, before any model is loaded, that the run may use it.

    The same checks run again under the directory lock when training starts (`prepare_output_dir`).
    `allow_resumable=True` (the Python API): a directory holding checkpoints is let through with a warning, since the
    caller may resume it the HF way, `trainer.train(resume_from_checkpoint=True)` (which checks the checkpoint);
    anything else it holds is refused now. `check_contents=False` leaves every check of what the directory holds to that point (a
    trainer built directly by a backend, whose caller checked already)."""
    import attrs

    output_dir = resolve_output_dir(config)
    check_writable_dir(Path(output_dir))
    if int(os.environ.get("RANK", "0")) != 0:
        # Another process of a distributed run (torchrun, accelerate): rank 0 checks, locks and writes the directory;
        # checking here too would race with it (rank 0 may already hold the lock or have written the record).
        return attrs.evolve(config, output_dir=output_dir)
    check_not_locked(output_dir)
    resume = config.resume_from_checkpoint
    if resume in (None, False):
        if check_contents and not config.overwrite_output_dir:
            if allow_resumable and list_checkpoints(output_dir):
                log.warning("output_dir holds another run's checkpoints: train() refuses to train into it unless it "
                            "resumes that run", output_dir=output_dir,
                            hint="trainer.train(resume_from_checkpoint=True) continues it; otherwise set "
                                 "overwrite_output_dir=True or choose another output_dir")
            else:
                prepare_output_dir(output_dir, resuming=False, overwrite=False)
    elif resume in (True, "latest") and latest_complete_checkpoint(output_dir, warn=False)[0] is None:
        raise ResumeError(
            f"nothing to resume in {output_dir}: it has no complete checkpoint. Start a new run without --resume, or "
            "give the checkpoint to resume from."
        )
    return attrs.evolve(config, output_dir=output_dir)
