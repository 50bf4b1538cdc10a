"""Reference log-probs cached on disk, keyed by the reference weights, the tokenized data and the settings.

Precomputing the reference log-probs once frees the reference model for training; caching them on disk lets later
epochs and later runs skip the reference pass altogether. Any change to the weights, the token ids, the truncation
or the precision gives a different key, so a stale cache is never read.

An entry is two files, ``<key>.pt`` (the tensors) and ``<key>.json`` (its metadata: the key, the shapes and dtypes
and a blake2b checksum of the tensors' bytes). An entry is used only when both files are regular files (never
symbolic links), the metadata names the requested key, and the tensors have the recorded shapes, the recorded
checksum and only finite values. Anything else is logged as a warning and read as a miss, so the trainer recomputes
and overwrites the entry. Entries are written with `aligntune.atomic` (a temporary file in the cache directory,
fsynced, renamed over the final name), which replaces a planted symbolic link instead of writing through it.
Directories the cache creates are private (0700), and so are its files (0600).

The checksum catches corrupt, truncated, swapped or stale tensor files. It is not a signature: whoever can write
into the cache directory can write a matching pair of files, which is why the directory is private and why a
directory owned by another user or writable by every user is not read from.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import re
import stat
from array import array
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import structlog
import torch

from aligntune.atomic import write_atomic_with, write_bytes_atomic

log = structlog.get_logger("aligntune.ref_cache")

FORMAT = 2  # 2: checksummed entries (format-1 entries get different keys and are never read)
CHECKSUM_ALGORITHM = "blake2b-256"
DIRECTORY_MODE = 0o700
FILE_MODE = 0o600  # entries are private like their directory
TENSORS = ("chosen", "rejected")
_DTYPE = torch.float32
_KEY = re.compile(r"[0-9A-Za-z_-]{1,128}")
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # a FIFO planted at the entry path must not block the open
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


class RejectedEntry(Exception):
    """A cache file that must not be used; ``reason`` says why."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def default_cache_dir() -> Path:
    xdg_cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    root = os.environ.get("ALIGNTUNE_CACHE_DIR") or xdg_cache / "aligntune"
    return Path(root) / "ref-logps"


def _model_class(model: torch.nn.Module) -> type:
    """The model's own class: FSDP2's `fully_shard` swaps in a subclass named `FSDP<class>`."""
    cls = type(model)
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # a torch build without distributed support
        return cls
    if issubclass(cls, FSDPModule):
        return next(base for base in cls.__mro__[1:] if not issubclass(base, FSDPModule))
    return cls


def model_fingerprint(model: torch.nn.Module, *, skip: Iterable[str] = ("lora_",)) -> str:
    """A digest of the parameters that compute the reference (adapter weights excluded: the reference runs with
    adapters disabled). A parameter sharded across processes (FSDP2's DTensor) is gathered whole, one at a time, so
    every process computes the same digest as one process would; all processes must call this together."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(_model_class(model).__name__.encode())
    for name, parameter in sorted(model.named_parameters(), key=lambda item: item[0]):
        if any(marker in name for marker in skip):
            continue
        tensor = parameter.detach()
        if hasattr(tensor, "full_tensor"):  # a DTensor: this process holds a shard
            tensor = tensor.full_tensor()
        tensor = tensor.cpu().contiguous()
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


def entry_paths(directory: Path, key: str) -> tuple[Path, Path]:
    """The tensor file and the metadata file of the entry ``key``."""
    if not _KEY.fullmatch(key):
        raise ValueError(f"invalid reference cache key {key!r}: expected 1-128 letters, digits, '-' or '_'")
    directory = Path(directory)
    return directory / f"{key}.pt", directory / f"{key}.json"


def tensor_checksum(key: str, tensors: Mapping[str, torch.Tensor]) -> str:
    """blake2b over the key and, for each tensor, its name, dtype, shape and raw bytes."""
    digest = hashlib.blake2b(digest_size=32)
    digest.update(f"aligntune-ref-logps|{FORMAT}|{key}".encode())
    for name in TENSORS:
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"|{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


# --- reading ---------------------------------------------------------------------------------------------------


def load(directory: Path, key: str) -> tuple[list[float], list[float]] | None:
    """The cached (chosen, rejected) reference log-probs, or None on a miss or an entry that fails verification."""
    tensor_path, meta_path = entry_paths(directory, key)
    if not os.path.lexists(tensor_path):
        return None
    try:
        _check_trusted_directory(Path(directory))
        metadata = _read_metadata(meta_path, key)
        tensors = _read_tensors(tensor_path)
        _verify(tensor_path, key, metadata, tensors)
    except RejectedEntry as rejected:  # recompute, never fail the run over a cache
        log.warning("ignoring reference log-prob cache entry", path=str(rejected.path), reason=rejected.reason)
        return None
    return tensors["chosen"].tolist(), tensors["rejected"].tolist()


def _check_trusted_directory(directory: Path) -> None:
    problem = _directory_problem(directory)
    if problem is not None:
        raise RejectedEntry(directory, f"cache directory {problem}; anyone able to write there could plant entries")


def _directory_problem(directory: Path) -> str | None:
    """Why entries in ``directory`` cannot be trusted, or None. Group-writable directories are accepted (a user's
    private group under umask 002); directories owned by another user or writable by every user are not."""
    try:
        info = os.stat(directory)
    except OSError as exc:
        return f"cannot be inspected ({exc.strerror or exc})"
    getuid = getattr(os, "getuid", None)
    if getuid is None:  # Windows: no POSIX ownership to check
        return None
    if info.st_uid != getuid():
        return f"is owned by uid {info.st_uid}, not by the current user (uid {getuid()})"
    if info.st_mode & stat.S_IWOTH:
        return "is writable by every user"
    return None


def _read_regular_file(path: Path) -> bytes:
    """The bytes of ``path`` if it is a regular file; a symbolic link (or FIFO, device...) is refused."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise RejectedEntry(path, "file is missing") from None
    except OSError as exc:
        raise RejectedEntry(path, f"cannot be inspected ({exc.strerror or exc})") from exc
    if stat.S_ISLNK(info.st_mode):
        raise RejectedEntry(path, "is a symbolic link; cache entries must be regular files")
    if not stat.S_ISREG(info.st_mode):
        raise RejectedEntry(path, "is not a regular file")
    try:
        descriptor = os.open(path, os.O_RDONLY | _O_NOFOLLOW | _O_NONBLOCK | _O_CLOEXEC | getattr(os, "O_BINARY", 0))
    except OSError as exc:  # ELOOP: replaced by a link after the lstat
        raise RejectedEntry(path, f"cannot be opened without following links ({exc.strerror or exc})") from exc
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise RejectedEntry(path, "is not a regular file")
        try:
            return handle.read()
        except OSError as exc:
            raise RejectedEntry(path, f"cannot be read ({exc.strerror or exc})") from exc


def _read_metadata(path: Path, key: str) -> dict[str, Any]:
    data = _read_regular_file(path)
    try:
        metadata = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RejectedEntry(path, f"metadata is not valid JSON ({exc})") from exc
    if not isinstance(metadata, dict):
        raise RejectedEntry(path, "metadata is not a JSON object")
    if metadata.get("format") != FORMAT:
        raise RejectedEntry(path, f"metadata format is {metadata.get('format')!r}, expected {FORMAT}")
    if metadata.get("key") != key:
        raise RejectedEntry(path, f"metadata is for key {metadata.get('key')!r}, not {key!r}")
    checksum = metadata.get("checksum")
    if (not isinstance(checksum, dict) or checksum.get("algorithm") != CHECKSUM_ALGORITHM
            or not isinstance(checksum.get("digest"), str)):
        raise RejectedEntry(path, f"metadata has no {CHECKSUM_ALGORITHM} checksum")
    described = metadata.get("tensors")
    if not isinstance(described, dict) or any(not _valid_description(described.get(name)) for name in TENSORS):
        raise RejectedEntry(path, "metadata does not describe the chosen and rejected tensors")
    return metadata


def _valid_description(description: Any) -> bool:
    return (isinstance(description, dict) and isinstance(description.get("dtype"), str)
            and isinstance(description.get("shape"), list)
            and all(isinstance(size, int) and size >= 0 for size in description["shape"]))


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    data = _read_regular_file(path)
    try:
        stored = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, foreign or hostile bytes: weights_only never runs pickled code
        raise RejectedEntry(path, f"not a readable tensor file ({type(exc).__name__}: {exc})") from exc
    if (not isinstance(stored, dict) or set(stored) != set(TENSORS)
            or not all(isinstance(stored[name], torch.Tensor) for name in TENSORS)):
        raise RejectedEntry(path, "does not hold exactly the chosen and rejected tensors")
    return stored


def _verify(path: Path, key: str, metadata: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> None:
    for name in TENSORS:
        tensor, described = tensors[name], metadata["tensors"][name]
        if tensor.dtype != _DTYPE or described["dtype"] != str(_DTYPE):
            raise RejectedEntry(path, f"{name} has dtype {tensor.dtype}, expected {_DTYPE}")
        if list(tensor.shape) != described["shape"] or tensor.dim() != 1:
            raise RejectedEntry(path, f"{name} has shape {list(tensor.shape)}, metadata records {described['shape']}")
    if tensors["chosen"].shape != tensors["rejected"].shape:
        raise RejectedEntry(path, "chosen and rejected have different lengths")
    if not hmac.compare_digest(tensor_checksum(key, tensors), metadata["checksum"]["digest"]):
        raise RejectedEntry(path, "checksum mismatch: the tensors are not the ones this entry recorded")
    for name in TENSORS:
        if not bool(torch.isfinite(tensors[name]).all()):
            raise RejectedEntry(path, f"{name} holds non-finite values")


# --- writing ---------------------------------------------------------------------------------------------------


def save(directory: Path, key: str, chosen: torch.Tensor, rejected: torch.Tensor, meta: Mapping[str, Any]) -> Path:
    """Write the entry ``key`` (replacing any existing one) and return the tensor file's path."""
    tensor_path, meta_path = entry_paths(directory, key)
    tensors = {"chosen": _as_stored(chosen), "rejected": _as_stored(rejected)}
    if tensors["chosen"].dim() != 1 or tensors["chosen"].shape != tensors["rejected"].shape:
        raise ValueError(f"reference log-probs must be two 1-D tensors of one length, got "
                         f"{list(tensors['chosen'].shape)} and {list(tensors['rejected'].shape)}")
    directory = Path(directory)
    make_private_directory(directory)
    problem = _directory_problem(directory)
    if problem is not None:
        log.warning("reference log-prob cache directory is not private; its entries will not be read back",
                    path=str(directory), reason=f"cache directory {problem}")
    metadata = {
        "format": FORMAT,
        "key": key,
        "checksum": {"algorithm": CHECKSUM_ALGORITHM, "digest": tensor_checksum(key, tensors)},
        "tensors": {name: {"dtype": str(t.dtype), "shape": list(t.shape)} for name, t in tensors.items()},
        "meta": dict(meta),
    }
    # Tensors first, metadata last: a reader racing the writer sees a checksum mismatch (a miss), never bad values.
    write_atomic_with(tensor_path, lambda temporary: torch.save(tensors, temporary), mode=FILE_MODE)
    write_bytes_atomic(meta_path, (json.dumps(metadata, indent=2, default=str) + "\n").encode("utf-8"),
                       mode=FILE_MODE)
    return tensor_path


def _as_stored(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().to(device="cpu", dtype=_DTYPE).contiguous()


def make_private_directory(directory: Path) -> None:
    """Create ``directory`` and any missing parents with mode 0700 (set explicitly, whatever the umask).
    Directories that already exist, including a symbolic link to a directory, are left exactly as they are."""
    missing: list[Path] = []
    current = Path(directory)
    while not os.path.lexists(current):
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, DIRECTORY_MODE)
        except FileExistsError:  # created meanwhile by someone else: not ours to change
            continue
        _chmod_directory(path, DIRECTORY_MODE)
    if not os.path.isdir(directory):
        raise NotADirectoryError(f"reference log-prob cache path {directory} is not a directory")


def _chmod_directory(path: Path, mode: int) -> None:
    """chmod the directory we just created, through a descriptor opened without following links."""
    if not (_O_DIRECTORY and hasattr(os, "fchmod")):
        os.chmod(path, mode)
        return
    descriptor = os.open(path, os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC)
    try:
        os.fchmod(descriptor, mode)
    finally:
        os.close(descriptor)
