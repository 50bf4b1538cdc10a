"""Which local files a dataset request names: the one `data_files` resolver every dataset adapter uses.

The rules (docs/datasets.md, "Local files: the data_files rules"):

- ``data_files`` is a path (``str`` or ``os.PathLike``), a list of them, or a mapping ``{split: path or list}``;
  a mapping is looked up by the split's name (``train`` for ``train[:10%]``).
- Each path is a file, a directory (its files for the split, chosen by the adapter's *layout*; by default files
  named after the split, e.g. ``train.jsonl`` or ``train-0001.parquet``), or a glob pattern (``data/*.jsonl``,
  ``shards/**/*.parquet``) when no file has that very name. ``~`` is expanded.
- Without ``data_files``, a ``dataset_name`` that is an existing path (or a pattern, or looks like a path: it starts
  with ``.``, ``/`` or ``~``, or ends in a data-file suffix) is read the same way; any other name is a hub id.
- A sliced split (``train[:10%]``, ``train[100:]``, ``train[10%:20%]``) reads the split's files, concatenated in
  order, and keeps the rows in the slice, as ``datasets`` would.

Third-party adapters import it::

    from aligntune.data.files import resolve_data_files

    files = resolve_data_files(request.data_files, request.split, dataset_name=request.dataset_name)
    if files is None:
        ...  # a hub dataset
    else:
        rows = files.rows()  # (location, row) pairs, the slice applied
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from aligntune.data.readers import SUFFIXES, file_format, files_in_directory, iter_file_rows
from aligntune.data.transforms import has_slice, needs_row_count, slice_bounds, split_name
from aligntune.errors import DataError

__all__ = [
    "READABLE_FORMATS",
    "DataFiles",
    "DirectoryLayout",
    "every_data_file",
    "files_for_split",
    "resolve_data_files",
]

READABLE_FORMATS: tuple[str, ...] = tuple(suffix[1:] for suffix in SUFFIXES)  # what aligntune.data.readers reads
RowReader = Callable[[Path], Iterable[tuple[str, Any]]]
# (directory, split name, accepted formats or None for any) -> the directory's files for that split
DirectoryLayout = Callable[[Path, str, Collection[str] | None], list[Path]]


def files_for_split(directory: Path, split: str, formats: Collection[str] | None = None) -> list[Path]:
    """The default layout: files named after the split (``train.jsonl``, ``train-0001.parquet``), or every data
    file when none is named after any split and the split is ``train``."""
    files = files_in_directory(directory, split)
    if formats is None:
        return files
    accepted = [p for p in files if file_format(p) in formats]
    if not accepted:
        names = ", ".join(str(p.relative_to(directory)) for p in files)
        raise DataError(f"{directory}: no {_kinds(formats)} file for split {split!r}; files here: {names}")
    return accepted


def every_data_file(directory: Path, split: str, formats: Collection[str] | None = None) -> list[Path]:
    """A layout for formats that hold every split in the same files: all data files under the directory."""
    accepted = READABLE_FORMATS if formats is None else tuple(formats)
    found = sorted(p for p in directory.rglob("*") if p.is_file() and file_format(p) in accepted)
    if not found:
        raise DataError(f"{directory}: no data files ({_kinds(accepted)}) in this directory; point data_files at "
                        "the files themselves or at the directory that holds them")
    return found


@attrs.frozen
class DataFiles:
    """The resolved local files of one split, in reading order, and the split as asked (a slice included)."""

    paths: tuple[Path, ...]
    split: str = "train"

    @property
    def split_name(self) -> str:
        """The split without its slice: ``train`` for ``train[:10%]``."""
        return split_name(self.split)

    def by_file(self, read: RowReader = iter_file_rows, *, count: RowReader | None = None
                ) -> Iterator[tuple[Path, Iterator[tuple[str, Any]]]]:
        """``(path, its rows within the slice)`` per file, for adapters that report per file. Consume each file's
        rows before asking for the next file (the slice counts rows across files). A percentage or a negative bound
        needs the number of rows first: ``count`` reads them for that pass (default ``read``; give one without side
        effects when ``read`` counts or reports what it skips)."""
        if not has_slice(self.split):
            for path in self.paths:
                yield path, iter(read(path))
            return
        counter = read if count is None else count
        total = sum(1 for path in self.paths for _ in counter(path)) if needs_row_count(self.split) else None
        start, stop = slice_bounds(self.split, total)
        position = [0]  # rows seen so far, across files

        def in_slice(path: Path) -> Iterator[tuple[str, Any]]:
            for item in read(path):
                if stop is not None and position[0] >= stop:
                    return
                if position[0] >= start:
                    yield item
                position[0] += 1

        for path in self.paths:
            if stop is not None and position[0] >= stop:
                return
            yield path, in_slice(path)

    def rows(self, read: RowReader = iter_file_rows, *, count: RowReader | None = None
             ) -> Iterator[tuple[str, Any]]:
        """``(location, row)`` of every file in order, the slice applied; ``read`` reads one file (default: the
        core's readers for .jsonl/.json/.csv/.parquet, optionally .gz); ``count``: see `by_file`."""
        for _path, rows in self.by_file(read, count=count):
            yield from rows


def resolve_data_files(
    data_files: Any,
    split: str = "train",
    *,
    dataset_name: str | os.PathLike[str] | None = None,
    layout: DirectoryLayout = files_for_split,
    formats: Collection[str] | None = READABLE_FORMATS,
) -> DataFiles | None:
    """The local files for ``split``: from ``data_files``, else from ``dataset_name`` when it is a path; None when
    the request names a hub dataset. ``layout`` picks a directory's files for a split; ``formats`` are the file
    types the adapter reads (None: any, the adapter checks). Every problem is a DataError that names the path."""
    name = split_name(split)
    if data_files is None:
        if dataset_name is None or not _looks_local(dataset_name):
            return None
        paths = _expand(dataset_name, name, layout, formats, what="dataset file")
    else:
        entries = _entries(data_files, name)
        paths = [path for entry in entries for path in _expand(entry, name, layout, formats, what="data file")]
    if has_slice(split):
        needs_row_count(split)  # checks the slice's form: a malformed one fails before any file is read
    return DataFiles(paths=tuple(paths), split=split)


def _entries(data_files: Any, split: str) -> list[str | os.PathLike[str]]:
    if isinstance(data_files, Mapping):
        if split not in data_files:
            raise DataError(f"data_files has no entry for split {split!r}; it has: "
                            f"{', '.join(map(str, data_files)) or 'none'}. Add a {split!r} entry, or choose one of "
                            "those splits with split=")
        data_files = data_files[split]
        where = f"data_files[{split!r}]"
    else:
        where = "data_files"
    entries = [data_files] if isinstance(data_files, (str, os.PathLike)) else data_files
    if not isinstance(entries, (list, tuple)):
        raise DataError(f"{where}: expected a path, a list of paths, or a mapping split -> paths, got "
                        f"{type(data_files).__name__} {_short(data_files)}")
    if not entries:
        raise DataError(f"{where} is empty: give at least one file, directory or pattern")
    for entry in entries:
        if not isinstance(entry, (str, os.PathLike)) or not os.fspath(entry):
            raise DataError(f"{where}: expected paths, got {type(entry).__name__} {_short(entry)}")
    return list(entries)


def _looks_local(dataset_name: str | os.PathLike[str]) -> bool:
    text = os.fspath(dataset_name)
    path = Path(text).expanduser()
    return (isinstance(dataset_name, os.PathLike) or path.exists() or glob.has_magic(text)
            or text.startswith((".", "/", "~")) or os.path.isabs(text) or file_format(path) is not None)


def _expand(entry: str | os.PathLike[str], split: str, layout: DirectoryLayout, formats: Collection[str] | None,
            *, what: str) -> list[Path]:
    path = Path(os.fspath(entry)).expanduser()
    if path.is_dir():
        return layout(path, split, formats)
    if path.exists():
        return [_checked_format(path, formats)]
    if not glob.has_magic(str(path)):
        raise DataError(f"{what} not found: {path}{_relative_hint(path)}")
    matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
    if not matches:
        raise DataError(f"data_files pattern {str(path)!r} matches no file{_relative_hint(path)}")
    found: list[Path] = []
    for match in matches:
        if match.is_dir():
            found.extend(layout(match, split, formats))
        elif match.is_file():
            found.append(_checked_format(match, formats))
    return found


def _checked_format(path: Path, formats: Collection[str] | None) -> Path:
    if formats is not None and file_format(path) not in formats:
        raise DataError(f"{path}: unsupported file type; use {_kinds(formats)}")
    return path


def _kinds(formats: Collection[str]) -> str:
    return ", ".join(f".{kind}" for kind in formats) + " (optionally .gz)"


def _relative_hint(path: Path) -> str:
    return "" if path.is_absolute() else f" (relative paths are read from the current directory, {Path.cwd()})"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
