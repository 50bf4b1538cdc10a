"""Loading preference data through the dataset adapter registry (the same path training uses)."""

from __future__ import annotations

from typing import Any

import attrs

from aligntune.data.readers import file_format, iter_file_rows
from aligntune.data.request import DatasetRequest, DropReport, PreferenceData
from aligntune.data.rows import rows_to_dataset, validate_rows

__all__ = [
    "DatasetRequest",
    "DropReport",
    "PreferenceData",
    "file_format",
    "iter_file_rows",
    "load_preference_data",
    "load_preference_dataset",
    "rows_to_dataset",
    "validate_rows",
]


def load_preference_data(
    dataset_name: str,
    *,
    split: str = "train",
    data_files: Any = None,
    dataset_config: str | None = None,
    max_samples: int | None = None,
    strict: bool = False,
    dataset_adapter: str | None = None,
    streaming: bool = False,
    **options: Any,
) -> PreferenceData:
    """Load preference pairs and the adapter's report (rows read, kept, dropped by reason).

    `streaming=True` returns a `datasets.IterableDataset` read lazily (local files and hub datasets through the
    generic adapter); its counts are in `PreferenceData.live_report` as the rows are read."""
    from aligntune.logging_setup import ensure_logging

    ensure_logging()
    from aligntune.errors import DataError
    from aligntune.plugins import resolve_dataset_adapter

    adapter = resolve_dataset_adapter(dataset_name, dataset_adapter)
    if streaming and not adapter.streaming:
        raise DataError(f"dataset adapter {adapter.name!r} cannot stream; set streaming: false (it loads "
                        f"{dataset_name!r} whole)")
    unknown = sorted(set(options) - set(adapter.options))
    if unknown:
        valid = ", ".join(sorted(adapter.options)) or "none"
        raise DataError(f"dataset adapter {adapter.name!r} has no option {unknown[0]!r}; its options: {valid}")
    request = DatasetRequest(
        dataset_name=dataset_name,
        split=split,
        data_files=data_files,
        dataset_config=dataset_config,
        max_samples=max_samples,
        strict=strict,
        options={**adapter.options, **options} if adapter.options else dict(options),
        streaming=streaming,
    )
    data = adapter.load(request)
    from aligntune.plugins import dataset_adapter_provenance

    # What served the request is part of the report (and so of the run record): never a silent substitute.
    return attrs.evolve(data, report={**data.report, "adapter": dataset_adapter_provenance(adapter.name)})


def load_preference_dataset(
    dataset_name: str,
    *,
    split: str = "train",
    data_files: Any = None,
    dataset_config: str | None = None,
    max_samples: int | None = None,
    **options: Any,
):
    """Load preference pairs as a `datasets.Dataset` with `prompt`, `chosen`, `rejected` columns.

    `dataset_name` is a hub id or a local `.json`/`.jsonl`/`.csv`/`.parquet` file (optionally `.gz`) or directory.
    Options: `strict=True` makes unusable rows errors instead of counted skips; `dataset_adapter=` picks an adapter
    by name; any other keyword goes to the adapter (e.g. `format="conversational"`).
    """
    return load_preference_data(
        dataset_name,
        split=split,
        data_files=data_files,
        dataset_config=dataset_config,
        max_samples=max_samples,
        **options,
    ).dataset
