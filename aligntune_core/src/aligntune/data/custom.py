"""The generic `preference` dataset adapter: local files, or hub datasets that already have prompt/chosen/rejected.

Local sources: a `.json`, `.jsonl`, `.csv` or `.parquet` file (optionally `.gz`), a directory of them, a glob, or
`data_files=` (resolved by `aligntune.data.files`, the rules every adapter shares). Anything else is treated as a
Hugging Face Hub id and loaded with `datasets.load_dataset`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import structlog

from aligntune.data.files import DataFiles, resolve_data_files
from aligntune.data.request import DatasetRequest, DropReport, PreferenceData
from aligntune.data.rows import log_report, rows_to_dataset, validate_rows
from aligntune.data.transforms import infer_prompt_column, process_rows, rename_columns, resolve_processing_fn
from aligntune.errors import DataError
from aligntune.plugins.hookspecs import hookimpl
from aligntune.plugins.records import DatasetAdapterSpec

log = structlog.get_logger("aligntune.data")


def local_files(request: DatasetRequest) -> list[Path] | None:
    """The local files a request names, or None when it names a hub dataset (the rules: aligntune.data.files)."""
    files = resolve_data_files(request.data_files, request.split, dataset_name=request.dataset_name)
    return None if files is None else list(files.paths)


def iter_local_rows(paths: list[Path], split: str | None = None) -> Iterator[tuple[str, Any]]:
    """The files' rows in order; a sliced `split` (`train[:50%]`, `train[100:]`) picks rows as `datasets` would
    (a percentage counts the rows first)."""
    return DataFiles(paths=tuple(paths), split=split or "train").rows()


def prepared_rows(rows: Iterator[tuple[str, Any]], request: DatasetRequest
                  ) -> tuple[Iterator[tuple[str, Any]], dict[str, str] | None]:
    """The user's `processing_fn`, then `column_mapping`, on raw rows (before they are checked). Without a
    mapping, a well-known prompt column (`input`, `question`, ...) stands in for a missing `prompt`: returned as the
    inferred mapping, which the caller announces."""
    rows = process_rows(rows, resolve_processing_fn(request.processing_fn), batched=request.processing_batched,
                        kwargs=request.processing_fn_kwargs)
    if request.column_mapping:
        return rename_columns(rows, request.column_mapping), None
    return infer_prompt_column(iter(rows), strict=request.strict)


def _announce_inferred(request: DatasetRequest, mapping: dict[str, str] | None) -> None:
    if mapping:
        (column, _), = mapping.items()
        log.warning(f"{request.dataset_name}: no 'prompt' column; column {column!r} is used as the prompt",
                    hint=f"set column_mapping={mapping} to say so (and silence this), or strict_data: true to "
                         "make it an error; other columns are not trained on")


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
    paths = local_files(request)  # a malformed slice fails here, before any file is read
    if request.streaming:
        return _stream(request, paths)
    if paths is not None:
        rows = iter_local_rows(paths, request.split)
    else:
        rows = _iter_hub_rows(load_hub_dataset(request), request.dataset_name, request.split)
    report = DropReport()
    rows, inferred = prepared_rows(rows, request)
    _announce_inferred(request, inferred)
    dataset = rows_to_dataset(
        validate_rows(rows, report=report, strict=request.strict, max_samples=request.max_samples)
    )
    log_report(request.dataset_name, request.split, report)
    if len(dataset) == 0:
        raise DataError(
            f"dataset {request.dataset_name!r} (split {request.split!r}) has no usable preference pairs "
            f"({report.as_dict()})"
        )
    extra = {"column_mapping_inferred": inferred} if inferred else {}
    return PreferenceData(dataset=dataset, report={**report.as_dict(), **extra})


def _stream(request: DatasetRequest, paths: list[Path] | None) -> PreferenceData:
    """The same rows, checked the same way, read lazily as training consumes them (an `IterableDataset`)."""
    import datasets

    report = DropReport()
    announced: list[bool] = []  # the inferred prompt column is said once, not on every pass
    hub = load_hub_dataset(request) if paths is None else None  # fails now, not at the first training step

    def rows() -> Iterator[dict[str, Any]]:
        report.restart()
        source = iter_local_rows(paths, request.split) if paths is not None else _iter_hub_rows(
            hub, request.dataset_name, request.split)
        prepared, inferred = prepared_rows(source, request)
        if report.read == 0 and not announced:
            _announce_inferred(request, inferred)
            announced.append(True)
        yield from validate_rows(prepared, report=report, strict=request.strict, max_samples=request.max_samples)

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
