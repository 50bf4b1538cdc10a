"""Atomic file writes: a reader, or a process that dies midway, sees the old file or the whole new one, never half.

Every file aligntune reads back (the run record, checkpoint markers, cached reference log-probs, evaluation
results) is written through here, and a third-party backend can do the same::

    from aligntune.atomic import write_json_atomic, write_atomic_with

    write_json_atomic(folder / "state.json", {"step": 10})
    write_atomic_with(folder / "extra.pt", lambda temporary: torch.save(extra, temporary))

How: the data goes to a new temporary file in the same directory (created exclusively, never through a symbolic
link), which is flushed and fsynced, then renamed over the final name with ``os.replace`` (atomic on POSIX and
Windows when both names are on one filesystem, which the same directory guarantees), and the directory is fsynced so
the rename survives a power cut (where the OS allows it). On any failure, an exception or a KeyboardInterrupt, the
temporary file is removed and the old file is left as it was. The rename replaces whatever is at the final name, a
planted symbolic link included, instead of writing through it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["fsync_directory", "write_atomic_with", "write_bytes_atomic", "write_json_atomic", "write_text_atomic"]

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC | _O_BINARY
DEFAULT_MODE = 0o666  # as open() would create it: the process umask applies (0o600 for private files)
TEMPORARY_SUFFIX = ".tmp"


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes, *, mode: int = DEFAULT_MODE) -> Path:
    """Replace ``path`` with ``data`` atomically; returns the path."""

    def fill(descriptor: int, _temporary: Path) -> None:
        try:
            handle = os.fdopen(descriptor, "wb")
        except BaseException:
            os.close(descriptor)
            raise
        with handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    return _replace(Path(path), mode, fill)


def write_text_atomic(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8",
                      mode: int = DEFAULT_MODE) -> Path:
    """Replace ``path`` with ``text`` atomically (encoded before anything is written); returns the path."""
    return write_bytes_atomic(path, text.encode(encoding), mode=mode)


def write_json_atomic(path: str | os.PathLike[str], data: Any, *, indent: int | None = 2,
                      mode: int = DEFAULT_MODE) -> Path:
    """Replace ``path`` with ``data`` as JSON (values JSON cannot hold are written as ``str(value)``), atomically;
    returns the path. The JSON is built before the file is touched, so a value that fails leaves nothing behind."""
    return write_text_atomic(path, json.dumps(data, indent=indent, default=str) + "\n", mode=mode)


def write_atomic_with(path: str | os.PathLike[str], write: Callable[[Path], object], *,
                      mode: int = DEFAULT_MODE) -> Path:
    """Replace ``path`` atomically with what ``write(temporary)`` writes into the temporary path it is given: for
    writers that want a path rather than bytes (``torch.save``, ``numpy.save`` with a file object, ...).

    ``write`` must write that very path (not rename something over it, and not add a suffix to it); the temporary
    file exists, empty, when it is called. Returns the final path."""

    def fill(descriptor: int, temporary: Path) -> None:
        os.close(descriptor)  # the writer opens the path itself (Windows would refuse a second open otherwise)
        write(temporary)
        _fsync_file(temporary)

    return _replace(Path(path), mode, fill)


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Make renames and new names in ``directory`` durable. Best effort: Windows cannot open a directory, and some
    filesystems refuse to fsync one; the rename itself has happened either way."""
    if not _O_DIRECTORY:
        return
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _fsync_file(path: Path) -> None:
    descriptor = os.open(path, os.O_RDWR | _O_NOFOLLOW | _O_CLOEXEC | _O_BINARY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _create_temporary(path: Path, mode: int) -> tuple[int, Path]:
    """A new, empty file next to ``path``, created exclusively (a name someone planted is never opened)."""
    for _ in range(64):
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}{TEMPORARY_SUFFIX}")
        try:
            return os.open(temporary, _CREATE, mode), temporary
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary file next to {path}: every name tried exists; remove the "
                          f".{path.name}.*{TEMPORARY_SUFFIX} files in {path.parent}")


def _replace(path: Path, mode: int, fill: Callable[[int, Path], None]) -> Path:
    """Create the temporary file, let ``fill`` write and fsync it, rename it over ``path``. ``fill`` owns the
    descriptor and closes it on every path (closing it here could close a number another thread has reused). Any
    failure, KeyboardInterrupt included, removes the temporary file and leaves ``path`` as it was."""
    descriptor, temporary = _create_temporary(path, mode)
    try:
        fill(descriptor, temporary)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    fsync_directory(path.parent)
    return path
