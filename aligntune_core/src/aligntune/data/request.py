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


@attrs.define
class DropReport:
    """How many rows were read, kept and dropped (by reason)."""

    read: int = 0
    kept: int = 0
    dropped: Counter = attrs.field(factory=Counter)

    def drop(self, reason: str) -> None:
        self.dropped[reason] += 1

    def as_dict(self) -> dict[str, Any]:
        return {"read": self.read, "kept": self.kept, "dropped": dict(sorted(self.dropped.items()))}


@attrs.frozen
class PreferenceData:
    """Rows with `prompt`, `chosen`, `rejected` (strings, or lists of {role, content} messages) and a report."""

    dataset: datasets.Dataset
    report: dict[str, Any] = attrs.field(factory=dict)
