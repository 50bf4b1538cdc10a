"""Reading local preference files row by row, so every error can name the file and line."""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from aligntune.errors import DataError

SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


def file_format(path: Path) -> str | None:
    """`jsonl`, `json`, `csv` or `parquet` (a trailing `.gz` is allowed), or None."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in SUFFIXES:
        return suffixes[-1][1:]
    return None


def _open_binary(path: Path):
    return gzip.open(path, "rb") if path.suffix.lower() == ".gz" else open(path, "rb")


def _read_error(path: Path, exc: Exception) -> DataError:
    if isinstance(exc, OSError) and exc.strerror:
        return DataError(f"cannot read {path}: {exc.strerror}")
    return DataError(f"cannot read {path}: {exc}")


def _not_utf8(path: Path, data: bytes, exc: UnicodeDecodeError, first_line: int = 1) -> DataError:
    """Name the line (and the byte) of a decoding error instead of a byte offset into the file."""
    before = data[: exc.start]
    line = first_line + before.count(b"\n")
    column = exc.start - (before.rfind(b"\n") + 1) + 1
    return DataError(f"{path}, line {line}, column {column}: not UTF-8 text (byte {data[exc.start]:#04x}); save the "
                     "file as UTF-8")


def _decode(path: Path, data: bytes, first_line: int = 1) -> str:
    """UTF-8, with a byte-order mark (Excel and Windows exports) accepted."""
    try:
        return data.decode("utf-8-sig" if first_line == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, data, exc, first_line) from None


def _read_text(path: Path) -> str:
    try:
        with _open_binary(path) as handle:
            data = handle.read()
    except (OSError, EOFError) as exc:
        raise _read_error(path, exc) from None
    return _decode(path, data)


def iter_jsonl(path: Path, on_invalid: Callable[[str], None] | None = None) -> Iterator[tuple[str, Any]]:
    """Yield `(location, value)` per non-blank line. Invalid JSON raises, or is passed to `on_invalid(message)`
    and skipped when a callback is given."""
    try:
        with _open_binary(path) as handle:
            for number, raw in enumerate(handle, start=1):
                line = _decode(path, raw, first_line=number)
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as exc:
                    message = f"{path}, line {number}, column {exc.colno}: invalid JSON: {exc.msg}"
                    if on_invalid is None:
                        raise DataError(message) from None
                    on_invalid(message)
                    continue
                yield f"{path}, line {number}", value
    except (OSError, EOFError) as exc:
        raise _read_error(path, exc) from None


def iter_json(path: Path) -> Iterator[tuple[str, Any]]:
    text = _read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.lineno == 2 or text.lstrip().startswith("{") and "\n{" in text:
            # Probably JSON Lines saved with a .json name.
            yield from iter_jsonl(path)
            return
        raise DataError(f"{path}, line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}") from None
    if isinstance(data, Mapping):
        lists = [key for key, value in data.items() if isinstance(value, list)]
        if len(lists) == 1:
            data = data[lists[0]]
        else:
            raise DataError(f"{path}: expected a list of rows (or an object with one list of rows), got an object")
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a list of rows, got {type(data).__name__}")
    for index, row in enumerate(data):
        yield f"{path}, item {index}", row


def _decoded_lines(path: Path, handle) -> Iterator[str]:
    for number, raw in enumerate(handle, start=1):
        yield _decode(path, raw, first_line=number)


def iter_csv(path: Path) -> Iterator[tuple[str, Any]]:
    """Row by row (a large file is never held whole), each line decoded on its own so a bad byte names its line."""
    try:
        with _open_binary(path) as handle:
            reader = csv.DictReader(_decoded_lines(path, handle))
            try:
                for row in reader:
                    yield f"{path}, line {reader.line_num}", row
            except csv.Error as exc:
                raise DataError(f"{path}, line {reader.line_num}: invalid CSV: {exc}") from None
    except (OSError, EOFError) as exc:
        raise _read_error(path, exc) from None


def iter_parquet(path: Path, batch_rows: int = 2000) -> Iterator[tuple[str, Any]]:
    """A batch of rows at a time: a large file is never held whole as Python objects."""
    try:
        import pyarrow.parquet as pq

        batches = pq.ParquetFile(path).iter_batches(batch_size=batch_rows)
        index = 0
        for batch in batches:
            for row in batch.to_pylist():
                yield f"{path}, row {index}", row
                index += 1
    except DataError:
        raise
    except Exception as exc:  # pyarrow raises several unrelated types for unreadable files
        raise _read_error(path, exc) from None


READERS = {"jsonl": iter_jsonl, "json": iter_json, "csv": iter_csv, "parquet": iter_parquet}


def iter_file_rows(path: Path) -> Iterator[tuple[str, Any]]:
    fmt = file_format(path)
    if fmt is None:
        raise DataError(f"{path}: unsupported file type; use one of {', '.join(SUFFIXES)} (optionally .gz)")
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    yield from READERS[fmt](path)


def files_in_directory(directory: Path, split: str) -> list[Path]:
    """Data files of `split` in a directory: files named after the split (`train.jsonl`, `train-0001.parquet`),
    or every data file when no file is named after any split and the split is `train`."""
    files = sorted(p for p in directory.rglob("*") if p.is_file() and file_format(p))
    if not files:
        raise DataError(f"{directory}: no data files ({', '.join(SUFFIXES)}, optionally .gz) in this directory")
    named = [p for p in files if p.name.lower().split(".")[0].split("-")[0] == split.lower()]
    if named:
        return named
    known_splits = {"train", "test", "validation", "valid", "eval", "dev"}
    if split == "train" and not any(p.name.lower().split(".")[0].split("-")[0] in known_splits for p in files):
        return files
    names = ", ".join(str(p.relative_to(directory)) for p in files)
    raise DataError(f"{directory}: no file for split {split!r} (expected e.g. {split}.jsonl); files here: {names}")
