"""Validating preference rows: shape checks with precise locations, and counted skips of unusable pairs."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import structlog

from aligntune.data.request import DropReport
from aligntune.errors import DataError

log = structlog.get_logger("aligntune.data")

COLUMNS = ("prompt", "chosen", "rejected")


def _is_messages(value: Any) -> bool:
    return (
        isinstance(value, list)
        and all(isinstance(m, Mapping) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value)
    )


def _kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "standard"
    if _is_messages(value):
        return "conversational"
    return None


PROMPT_ROLES = ("system", "user", "assistant", "tool")
COMPLETION_ROLES = ("assistant",)


def _check_roles(location: str, column: str, messages: list[Mapping[str, Any]]) -> None:
    """Roles a chat template knows; a completion is the assistant's reply, so only assistant messages."""
    allowed = PROMPT_ROLES if column == "prompt" else COMPLETION_ROLES
    for index, message in enumerate(messages):
        if message["role"] not in allowed:
            what = "a completion" if column != "prompt" else "a prompt"
            raise DataError(
                f"{location}, column {column!r}, message {index}: role {message['role']!r} is not allowed in {what}; "
                f"allowed: {', '.join(allowed)}"
                + (" (the prompt holds the system/user turns, chosen and rejected the assistant reply)"
                   if column != "prompt" else "")
            )


def _is_empty(value: Any) -> bool:
    if isinstance(value, str):
        return not value.strip()
    return not value or all(not m["content"].strip() for m in value)


def _describe(value: Any) -> str:
    if isinstance(value, list):
        return "a list that is not {role, content} messages"
    return type(value).__name__


def validate_rows(
    rows: Iterable[tuple[str, Mapping[str, Any]]],
    *,
    report: DropReport,
    strict: bool,
    max_samples: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield clean `{prompt, chosen, rejected}` rows from `(location, row)` pairs.

    Missing columns and wrong types are errors (they mean the file is not preference data). Empty responses and
    identical chosen/rejected pairs are skipped and counted in `report` (errors when `strict`).
    """
    if max_samples is not None and max_samples <= 0:
        return
    first_format: tuple[str, str] | None = None  # (kind, location) of the first row: every row must match it
    for location, row in rows:
        report.read += 1
        if not isinstance(row, Mapping):
            raise DataError(f"{location}: expected an object with {', '.join(COLUMNS)}, got {type(row).__name__}")
        missing = [c for c in COLUMNS if c not in row]
        if missing:
            found = ", ".join(sorted(map(str, row))) or "none"
            from aligntune.data.transforms import suggested_mapping

            suggestion = suggested_mapping(map(str, row))
            fix = (f"set column_mapping={suggestion} if that column holds the prompt" if suggestion else
                   "rename them with column_mapping={your column: prompt | chosen | rejected}")
            raise DataError(
                f"{location}: missing column(s) {', '.join(missing)}; found: {found}. Preference data needs "
                f"{', '.join(COLUMNS)}: {fix}, or use a dataset adapter for this format."
            )
        kinds = {}
        for column in COLUMNS:
            kind = _kind(row[column])
            if kind is None:
                raise DataError(
                    f"{location}, column {column!r}: expected a string or a list of {{role, content}} messages, "
                    f"got {_describe(row[column])}"
                )
            kinds[column] = kind
        if len(set(kinds.values())) > 1:
            raise DataError(
                f"{location}: columns mix plain strings and message lists ({kinds}); use one format for all three"
            )
        kind = kinds["prompt"]
        if first_format is None:
            first_format = (kind, location)
        elif kind != first_format[0]:
            raise DataError(
                f"{location}: this row is {_format_name(kind)} but the first row ({first_format[1]}) is "
                f"{_format_name(first_format[0])}; one dataset must use one format"
            )
        if kind == "conversational":
            for column in COLUMNS:
                _check_roles(location, column, row[column])
        reason = None
        if _is_empty(row["chosen"]):
            reason = "empty_chosen"
        elif _is_empty(row["rejected"]):
            reason = "empty_rejected"
        elif row["chosen"] == row["rejected"]:
            reason = "identical_chosen_rejected"
        if reason is not None:
            if strict:
                raise DataError(f"{location}: unusable pair ({reason.replace('_', ' ')}); strict mode stops here")
            report.drop(reason)
            continue
        report.kept += 1
        yield {c: _clean(row[c]) for c in COLUMNS}
        if max_samples is not None and report.kept >= max_samples:
            return


def _format_name(kind: str) -> str:
    return "message lists (conversational)" if kind == "conversational" else "plain strings (standard)"


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return value
    return [{"role": m["role"], "content": m["content"]} for m in value]


ARROW_BATCH_ROWS = 2000


def rows_to_dataset(rows: Iterable[Mapping[str, Any]], *, batch_rows: int = ARROW_BATCH_ROWS):
    """Build a `datasets.Dataset` from clean rows, converting them to Arrow a batch at a time: only one batch of
    Python objects is alive at once, so a file loads in about its own size of memory (the rows are consumed from
    the iterator, never listed whole)."""
    import datasets
    import pyarrow as pa
    from datasets.fingerprint import generate_random_fingerprint
    from datasets.table import InMemoryTable

    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    batches: list[pa.RecordBatch] = []
    pending: list[Mapping[str, Any]] = []
    schema = None
    for row in rows:
        if schema is None:  # one schema for every batch (a batch of empty message lists would infer list<null>)
            kind = pa.string() if isinstance(row["prompt"], str) else pa.list_(message)
            schema = pa.schema([(column, kind) for column in COLUMNS])
        pending.append(row)
        if len(pending) >= batch_rows:
            batches.append(pa.RecordBatch.from_pylist(pending, schema=schema))
            pending = []
    if pending:
        batches.append(pa.RecordBatch.from_pylist(pending, schema=schema))
    if not batches:
        return datasets.Dataset.from_dict({c: [] for c in COLUMNS})
    # Without a fingerprint, Dataset() hashes the whole table (a serialised copy: ~4x the data in memory).
    return datasets.Dataset(InMemoryTable(pa.Table.from_batches(batches)), fingerprint=generate_random_fingerprint())


def log_report(dataset_name: str, split: str, report: DropReport) -> None:
    if report.dropped:
        log.warning("skipped unusable preference pairs", dataset=dataset_name, split=split, **report.as_dict())
    else:
        log.info("loaded preference pairs", dataset=dataset_name, split=split, kept=report.kept)
