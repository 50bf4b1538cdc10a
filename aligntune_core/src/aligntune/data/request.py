"""What a dataset adapter is asked for, and what it returns."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    import datasets


@attrs.frozen
class DatasetRequest:
    """A request to load preference pairs: the same arguments whatever adapter serves it."""

    dataset_name: str
    split: str = "train"
    data_files: str | list[str] | dict[str, Any] | None = None
    dataset_config: str | None = None
    max_samples: int | None = None
    strict: bool = False
    options: dict[str, Any] = attrs.field(factory=dict)
    streaming: bool = False  # rows read lazily as training consumes them (adapters with `streaming=True` only)
    # Row transforms of the generic adapter (aligntune.data.transforms): the user's function, then the renaming.
    column_mapping: dict[str, str] | None = None
    processing_fn: Any = None
    processing_batched: bool = False
    processing_fn_kwargs: dict[str, Any] = attrs.field(factory=dict)


@attrs.define
class DropReport:
    """How many rows were read, kept and dropped (by reason)."""

    read: int = 0
    kept: int = 0
    dropped: Counter = attrs.field(factory=Counter)

    def drop(self, reason: str) -> None:
        self.dropped[reason] += 1

    def restart(self) -> None:
        """A new pass over a stream counts from zero (the record keeps the last pass's counts)."""
        self.read = self.kept = 0
        self.dropped.clear()

    def as_dict(self) -> dict[str, Any]:
        return {"read": self.read, "kept": self.kept, "dropped": dict(sorted(self.dropped.items()))}


@attrs.frozen
class PreferenceData:
    """Rows with `prompt`, `chosen`, `rejected` (strings, or lists of {role, content} messages) and a report."""

    dataset: datasets.Dataset | datasets.IterableDataset
    report: dict[str, Any] = attrs.field(factory=dict)
    # For a stream: the counts, filled in as training reads the rows (`report` cannot hold them up front).
    live_report: DropReport | None = None

    def report_now(self) -> dict[str, Any]:
        """The report with a stream's counts as of now."""
        if self.live_report is None:
            return dict(self.report)
        return {**self.report, **self.live_report.as_dict()}
