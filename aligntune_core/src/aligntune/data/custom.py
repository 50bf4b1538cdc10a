"""The generic `preference` dataset adapter: local files, or hub datasets that already have prompt/chosen/rejected.

Local sources: a `.json`, `.jsonl`, `.csv` or `.parquet` file (optionally `.gz`), a directory of them, or
`data_files=`. Anything else is treated as a Hugging Face Hub id and loaded with `datasets.load_dataset`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from aligntune.data.readers import file_format, files_in_directory, iter_file_rows
from aligntune.data.request import DatasetRequest, DropReport, PreferenceData
from aligntune.data.rows import log_report, rows_to_dataset, validate_rows
from aligntune.errors import DataError
from aligntune.plugins.hookspecs import hookimpl
from aligntune.plugins.records import DatasetAdapterSpec


def local_files(request: DatasetRequest) -> list[Path] | None:
    """The local files a request names, or None when it names a hub dataset."""
    data_files = request.data_files
    if data_files is not None:
        if isinstance(data_files, Mapping):
            if request.split not in data_files:
                raise DataError(
                    f"data_files has no entry for split {request.split!r}; it has: {', '.join(map(str, data_files))}"
                )
            data_files = data_files[request.split]
        names = [data_files] if isinstance(data_files, str) else list(data_files)
        paths = []
        for name in names:
            path = Path(name).expanduser()
            if path.is_dir():
                paths.extend(files_in_directory(path, request.split))
            elif not path.exists():
                raise DataError(f"data file not found: {path}")
            else:
                paths.append(path)
        return paths
    path = Path(request.dataset_name).expanduser()
    if path.is_dir():
        return files_in_directory(path, request.split)
    if path.is_file():
        return [path]
    if file_format(path) is not None or request.dataset_name.startswith((".", "/", "~")):
        raise DataError(f"dataset file not found: {path}")
    return None


def iter_local_rows(paths: list[Path]) -> Iterator[tuple[str, Any]]:
    for path in paths:
        yield from iter_file_rows(path)


def load_hub_dataset(request: DatasetRequest):
    """`datasets.load_dataset` with errors that say what to check."""
    import datasets

    try:
        return datasets.load_dataset(request.dataset_name, request.dataset_config, split=request.split,
                                     streaming=request.streaming)
    except (FileNotFoundError, ConnectionError, OSError, ValueError) as exc:
        raise DataError(
            f"cannot load dataset {request.dataset_name!r} (config {request.dataset_config!r}, split "
            f"{request.split!r}) from the Hugging Face Hub: {exc}. For local data pass a file or directory path "
            f"(.json, .jsonl, .csv, .parquet) as dataset_name, or data_files=..."
        ) from None


def _iter_hub_rows(dataset, name: str, split: str) -> Iterator[tuple[str, Any]]:
    for index, row in enumerate(dataset):
        yield f"{name} [{split}] row {index}", row


def load(request: DatasetRequest) -> PreferenceData:
    if request.options:
        raise DataError(
            f"the generic preference adapter takes no options, got: {', '.join(sorted(request.options))}"
        )
    paths = local_files(request)
    if request.streaming:
        return _stream(request, paths)
    if paths is not None:
        rows = iter_local_rows(paths)
    else:
        rows = _iter_hub_rows(load_hub_dataset(request), request.dataset_name, request.split)
    report = DropReport()
    dataset = rows_to_dataset(
        validate_rows(rows, report=report, strict=request.strict, max_samples=request.max_samples)
    )
    log_report(request.dataset_name, request.split, report)
    if len(dataset) == 0:
        raise DataError(
            f"dataset {request.dataset_name!r} (split {request.split!r}) has no usable preference pairs "
            f"({report.as_dict()})"
        )
    return PreferenceData(dataset=dataset, report=report.as_dict())


def _stream(request: DatasetRequest, paths: list[Path] | None) -> PreferenceData:
    """The same rows, checked the same way, read lazily as training consumes them (an `IterableDataset`)."""
    import datasets

    report = DropReport()
    hub = load_hub_dataset(request) if paths is None else None  # fails now, not at the first training step

    def rows() -> Iterator[dict[str, Any]]:
        report.restart()
        source = iter_local_rows(paths) if paths is not None else _iter_hub_rows(hub, request.dataset_name,
                                                                                  request.split)
        yield from validate_rows(source, report=report, strict=request.strict, max_samples=request.max_samples)

    dataset = datasets.IterableDataset.from_generator(rows)
    return PreferenceData(dataset=dataset, report={"streaming": True}, live_report=report)


@hookimpl
def aligntune_dataset_adapters() -> Iterator[DatasetAdapterSpec]:
    yield DatasetAdapterSpec(
        name="preference",
        summary="Local files or hub datasets with prompt/chosen/rejected columns",
        load=load,
        streaming=True,
    )
