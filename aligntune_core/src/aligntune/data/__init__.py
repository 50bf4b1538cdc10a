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
    "add_system_prompt",
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
    column_mapping: dict[str, str] | None = None,
    processing_fn: Any = None,
    processing_batched: bool = False,
    processing_fn_kwargs: dict[str, Any] | None = None,
    system_prompt: str | None = None,
    **options: Any,
) -> PreferenceData:
    """Load preference pairs and the adapter's report (rows read, kept, dropped by reason).

    `streaming=True` returns a `datasets.IterableDataset` read lazily (local files and hub datasets through the
    generic adapter); its counts are in `PreferenceData.live_report` as the rows are read.

    `processing_fn` and `column_mapping` transform raw rows of the generic adapter before they are checked;
    `system_prompt` puts a system message at the start of every prompt, whatever adapter loaded the pairs
    (see `aligntune.data.transforms`)."""
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
    from aligntune.plugins import GENERIC_ADAPTER

    row_options = [name for name, value in (("column_mapping", column_mapping), ("processing_fn", processing_fn))
                   if value]
    if row_options and adapter.name != GENERIC_ADAPTER:
        raise DataError(
            f"{' and '.join(row_options)} work on the raw rows of plain preference files and hub datasets, but "
            f"{dataset_name!r} is read by the {adapter.name!r} dataset adapter, which already produces "
            f"prompt/chosen/rejected: remove {' and '.join(row_options)} (or set dataset_adapter: {GENERIC_ADAPTER} "
            "to read the raw rows yourself)"
        )
    request = DatasetRequest(
        dataset_name=dataset_name,
        split=split,
        data_files=data_files,
        dataset_config=dataset_config,
        max_samples=max_samples,
        strict=strict,
        options={**adapter.options, **options} if adapter.options else dict(options),
        streaming=streaming,
        column_mapping=dict(column_mapping) if column_mapping else None,
        processing_fn=processing_fn,
        processing_batched=processing_batched,
        processing_fn_kwargs=dict(processing_fn_kwargs or {}),
    )
    data = adapter.load(request)
    from aligntune.plugins import dataset_adapter_provenance

    report = {**data.report, "adapter": dataset_adapter_provenance(adapter.name)}
    if column_mapping:
        report["column_mapping"] = dict(column_mapping)
    if processing_fn:
        from aligntune.data.transforms import describe_callable

        report["processing_fn"] = describe_callable(processing_fn)
    if system_prompt is not None:
        data, report["system_prompt"] = add_system_prompt(data, system_prompt)
    # What served the request is part of the report (and so of the run record): never a silent substitute.
    return attrs.evolve(data, report=report)


def add_system_prompt(data: PreferenceData, system_prompt: str) -> tuple[PreferenceData, dict[str, Any]]:
    """Every prompt starts with `system_prompt` as a system message; rows that have their own keep it (counted)."""
    import datasets
    import structlog

    from aligntune.data.transforms import has_own_system_message, with_system_prompt

    log = structlog.get_logger("aligntune.data")
    dataset = data.dataset
    if isinstance(dataset, datasets.IterableDataset):
        return attrs.evolve(data, dataset=dataset.map(lambda row: with_system_prompt(row, system_prompt))), {
            "text": system_prompt, "applied": "to every streamed row without its own system message"}
    kept_own = sum(1 for row in dataset.select_columns(["prompt"]) if has_own_system_message(row))
    plain = len(dataset) and isinstance(dataset[0]["prompt"], str)
    dataset = dataset.map(lambda row: with_system_prompt(row, system_prompt), desc="Adding the system prompt")
    summary = {"text": system_prompt, "applied": len(dataset) - kept_own, "kept_own_system_message": kept_own}
    if plain:
        summary["plain_text_rows_made_conversational"] = len(dataset)
    if kept_own:
        log.warning(f"system_prompt: {kept_own} of {len(dataset)} prompts already start with a system message and "
                    "keep it")
    log.info("system_prompt added to the prompts", **{k: v for k, v in summary.items() if k != "text"})
    return attrs.evolve(data, dataset=dataset), summary


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
