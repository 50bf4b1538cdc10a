"""The pairs to evaluate: loaded from `dataset_name` as training loads them, or passed to `run_eval` in memory.

Either way every row goes through the same validation as training's files (`aligntune.data.validate_rows`), after
`column_mapping` renamed the columns, so a bad row is reported with where it is and what is wrong.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import structlog

from aligntune.data import (
    DropReport,
    PreferenceData,
    add_system_prompt,
    load_preference_data,
    rows_to_dataset,
    validate_rows,
)
from aligntune.data.rows import log_report
from aligntune.data.transforms import rename_columns
from aligntune.errors import ConfigError, DataError
from aligntune.eval.config import EvalConfig

log = structlog.get_logger("aligntune.eval")

IN_MEMORY = "the dataset passed to run_eval"
DEFAULT_SPLIT = "test"
DATASET_REQUIRED = ("dataset_name is required: a hub id or a local file/directory of preference pairs; or pass the "
                    "data itself: run_eval(config, dataset=my_dataset)")


def split_to_score(config: EvalConfig) -> str:
    """The split of `dataset_name` to score. A single local file has no splits: scoring it as "test" would label the
    training data as held-out, so there the split must be given."""
    if config.split is not None:
        return config.split
    single_file = (config.data_files is None and Path(config.dataset_name).expanduser().is_file()) or isinstance(
        config.data_files, (str, list, tuple))
    if single_file:
        raise ConfigError(
            f"dataset {config.dataset_name!r} is a single file with no splits, and split is not set: it would be "
            "scored and labelled as the 'test' split even if it is the training data. Set split explicitly (e.g. "
            "split: test for a held-out file), or give data_files={train: ..., test: ...}."
        )
    return DEFAULT_SPLIT


def _validated(rows: Iterable[tuple[str, Any]], config: EvalConfig, *, label: str, split: str) -> PreferenceData:
    report = DropReport()
    dataset = rows_to_dataset(validate_rows(rename_columns(rows, config.column_mapping), report=report, strict=False,
                                            max_samples=config.max_samples))
    log_report(label, split, report)
    if len(dataset) == 0:
        raise DataError(f"{label} (split {split!r}) has no usable preference pairs ({report.as_dict()})")
    return PreferenceData(dataset=dataset, report=report.as_dict())


def _pick_split(dataset: Any, config: EvalConfig) -> tuple[Any, str]:
    split = config.split or DEFAULT_SPLIT
    if split not in dataset:
        available = ", ".join(map(str, dataset)) or "none"
        raise ConfigError(f"{IN_MEMORY} is a DatasetDict without a {split!r} split (it has: {available}); set "
                          f"split to one of them")
    return dataset[split], split


def _refuse_loading_options(config: EvalConfig) -> None:
    """Options that only say how to load `dataset_name` would be silently unused with a dataset in memory."""
    given = [name for name in ("data_files", "dataset_config", "dataset_adapter") if getattr(config, name) is not None]
    if config.dataset_options:
        given.append("dataset_options")
    if given:
        raise ConfigError(f"{', '.join(given)} only apply when loading dataset_name; with a dataset passed to "
                          f"run_eval(config, dataset=...), remove {'them' if len(given) > 1 else 'it'}")


def in_memory_data(dataset: Any, config: EvalConfig) -> tuple[PreferenceData, str, str]:
    """Validate a `datasets.Dataset`, a `DatasetDict` (its `split`, else "test") or a list of row dicts.
    Returns the pairs, a label for the report and the split name."""
    import datasets

    _refuse_loading_options(config)
    if isinstance(dataset, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        dataset, split = _pick_split(dataset, config)
    else:
        split = config.split or "in-memory"
    if isinstance(dataset, (datasets.Dataset, datasets.IterableDataset)):
        kind = type(dataset).__name__
        rows: Iterable[tuple[str, Any]] = ((f"{IN_MEMORY} [{split}] row {i}", row) for i, row in enumerate(dataset))
    elif isinstance(dataset, (list, tuple)):
        kind = "list of rows"
        rows = ((f"{IN_MEMORY}, item {i}", row) for i, row in enumerate(dataset))
    else:
        raise ConfigError(f"run_eval(config, dataset=...) takes a datasets.Dataset, a DatasetDict (its split "
                          f"{config.split or DEFAULT_SPLIT!r} is used) or a list of {{prompt, chosen, rejected}} "
                          f"dicts; got {type(dataset).__name__}")
    if config.dataset_name is not None:
        log.info("scoring the dataset passed to run_eval; dataset_name only labels it",
                 dataset_name=config.dataset_name)
    label = config.dataset_name or f"{IN_MEMORY} ({kind})"
    data = _validated(rows, config, label=label, split=split)
    return PreferenceData(dataset=data.dataset, report={**data.report, "source": f"in memory ({kind})",
                                                        "split": split}), label, split


def load_eval_data(config: EvalConfig, dataset: Any = None, *, system_prompt: str | None = None
                   ) -> tuple[PreferenceData, str, str]:
    """The pairs to score, a label for the report (the dataset's name) and the split; with `system_prompt`, every
    prompt starts with it (as training did)."""
    if dataset is not None:
        data, label, split = in_memory_data(dataset, config)
        if system_prompt is not None:
            data, summary = add_system_prompt(data, system_prompt)
            data = PreferenceData(dataset=data.dataset, report={**data.report, "system_prompt": summary})
        return data, label, split
    if config.dataset_name is None:
        raise ConfigError(DATASET_REQUIRED)
    split = split_to_score(config)
    data = load_preference_data(
        config.dataset_name, split=split, data_files=config.data_files, dataset_config=config.dataset_config,
        max_samples=config.max_samples, dataset_adapter=config.dataset_adapter, column_mapping=config.column_mapping,
        system_prompt=system_prompt, **config.dataset_options,
    )
    return data, config.dataset_name, split
