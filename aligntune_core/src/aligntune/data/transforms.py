"""What a user can ask to be done to raw rows before they are checked as preference pairs, and to the pairs after.

In the order they run on the generic adapter's rows:

1. a split slice (`train[:50%]`, `train[100:200]`), picking raw rows as `datasets` does for hub data;
2. `processing_fn`: the user's function, per row (`f(row) -> row`) or batched (`f(batch) -> batch`);
3. `column_mapping`: `{your column: prompt | chosen | rejected}`;
4. validation (`aligntune.data.rows.validate_rows`);
5. `system_prompt`: a system message put at the start of every prompt (plain-text rows become conversational).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from aligntune.errors import ConfigError, DataError

COLUMNS = ("prompt", "chosen", "rejected")


# -- column_mapping ----------------------------------------------------------------------------------------------------

def column_mapping_problem(value: Any) -> str | None:
    """Why `value` is not a valid `column_mapping` (`{your column: prompt | chosen | rejected}`), or None."""
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return f"must be a mapping of your column names to prompt, chosen or rejected, got {value!r}"
    wrong = {source: target for source, target in value.items() if target not in COLUMNS}
    if wrong:
        hint = ""
        if all(source in COLUMNS for source in wrong):  # written target -> source
            hint = f"; it maps your column to ours, e.g. {{{next(iter(wrong.values()))!r}: {next(iter(wrong))!r}}}"
        return f"maps to {sorted(set(wrong.values()))}, but the targets must be {', '.join(COLUMNS)}{hint}"
    targets = list(value.values())
    repeated = sorted({t for t in targets if targets.count(t) > 1})
    if repeated:
        return f"maps several columns to {repeated[0]!r}; map one column to each of {', '.join(COLUMNS)}"
    return None


def rename_columns(rows: Iterable[tuple[str, Any]], mapping: Mapping[str, str] | None) -> Iterator[tuple[str, Any]]:
    """Apply `column_mapping` ({your column: prompt | chosen | rejected}) to `(location, row)` pairs."""
    if not mapping:
        yield from rows
        return
    for location, row in rows:
        if not isinstance(row, Mapping):
            yield location, row  # validate_rows says what is wrong with it
            continue
        missing = [source for source in mapping if source not in row]
        if missing:
            found = ", ".join(sorted(map(str, row))) or "none"
            raise DataError(f"{location}: column_mapping renames {', '.join(map(repr, missing))}, which this row "
                            f"does not have; its columns: {found}")
        renamed = {key: value for key, value in row.items() if key not in mapping}
        for source, target in mapping.items():
            if target in renamed:
                raise DataError(f"{location}: column_mapping renames {source!r} to {target!r}, but the row already "
                                f"has a {target!r} column; map that column too, or drop it from column_mapping")
            renamed[target] = row[source]
        yield location, renamed


# Column names other preference datasets use for the prompt (AlignTune 0.x renamed the first it found, silently;
# here a missing-column error suggests the mapping instead).
PROMPT_SYNONYMS = ("instruction", "input", "question", "query", "user_input", "history")


def suggested_mapping(columns: Iterable[str]) -> dict[str, str] | None:
    present = set(columns)
    if "prompt" in present:
        return None
    for name in PROMPT_SYNONYMS:
        if name in present:
            return {name: "prompt"}
    return None


def infer_prompt_column(rows: Iterator[tuple[str, Any]], *, strict: bool
                        ) -> tuple[Iterator[tuple[str, Any]], dict[str, str] | None]:
    """Rows with chosen/rejected but no `prompt`, and one well-known prompt column (`input`, `question`, ...):
    that column is used as the prompt, and the caller says so (log and run record). Under `strict` the rows are
    left as they are, so the missing column is an error that suggests the mapping."""
    import itertools

    first = next(rows, None)
    if first is None:
        return iter(()), None
    rows = itertools.chain([first], rows)
    row = first[1]
    if strict or not isinstance(row, Mapping) or "prompt" in row or not {"chosen", "rejected"} <= set(row):
        return rows, None
    mapping = suggested_mapping(map(str, row))
    if mapping is None:
        return rows, None
    return rename_columns(rows, mapping), mapping


# -- processing_fn -----------------------------------------------------------------------------------------------------

def resolve_processing_fn(value: Any) -> Callable[..., Any] | None:
    """A callable, or `"package.module:function"` (the form a YAML file can hold), as a callable."""
    if value is None or callable(value):
        return value
    module_name, _, attribute = str(value).partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"processing_fn {value!r}: cannot import it ({exc}); write it as 'package.module:function' "
                          "with the module importable from where you run aligntune") from None
    if not callable(target):
        raise ConfigError(f"processing_fn {value!r} is a {type(target).__name__}, not a function")
    return target


def processing_fn_problem(value: Any) -> str | None:
    if value is None or callable(value):
        return None
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", value):
        return None
    return f"must be a function, or 'package.module:function' in a config file; got {value!r}"


def describe_callable(value: Any) -> Any:
    """How a `processing_fn` is written in the run record and the fingerprint (stable across processes)."""
    if value is None or isinstance(value, str):
        return value
    return f"{getattr(value, '__module__', '?')}:{getattr(value, '__qualname__', type(value).__name__)}"


def process_rows(rows: Iterable[tuple[str, Any]], fn: Callable[..., Any] | None, *, batched: bool = False,
                 batch_size: int = 1000, kwargs: Mapping[str, Any] | None = None) -> Iterator[tuple[str, Any]]:
    """Apply the user's `processing_fn` to `(location, row)` pairs: `fn(row, **kwargs) -> row`, or with `batched`,
    `fn({column: [values]}, **kwargs) -> {column: [values]}` (a batch may come back with another number of rows).
    A failure names the row (or the batch's first row) it happened on."""
    if fn is None:
        yield from rows
        return
    kwargs = dict(kwargs or {})
    name = describe_callable(fn)
    rows = _mappings_only(rows)
    if not batched:
        for location, row in rows:
            try:
                result = fn(dict(row), **kwargs)
            except Exception as exc:  # the user's code: say where, keep their exception as the cause
                raise DataError(f"{location}: processing_fn {name} failed: {type(exc).__name__}: {exc}") from exc
            if not isinstance(result, Mapping):
                raise DataError(f"{location}: processing_fn {name} returned {type(result).__name__}; it must return "
                                "the row as a dict (with prompt, chosen, rejected or the columns column_mapping names)")
            yield location, result
        return
    pending: list[tuple[str, Any]] = []

    def run(batch: list[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
        first = batch[0][0]
        columns = {key: [row.get(key) for _, row in batch] for key in batch[0][1]}
        try:
            result = fn(columns, **kwargs)
        except Exception as exc:
            raise DataError(f"batch starting at {first}: processing_fn {name} failed: {type(exc).__name__}: "
                            f"{exc}") from exc
        if not isinstance(result, Mapping) or not all(isinstance(v, list) for v in result.values()):
            raise DataError(f"batch starting at {first}: processing_fn {name} (batched) must return a dict of "
                            f"lists, got {type(result).__name__}")
        sizes = {len(v) for v in result.values()}
        if len(sizes) > 1:
            raise DataError(f"batch starting at {first}: processing_fn {name} returned columns of different lengths "
                            f"({ {k: len(v) for k, v in result.items()} })")
        for index in range(sizes.pop() if sizes else 0):
            yield f"{first} (+{index} after processing_fn)", {key: values[index] for key, values in result.items()}

    for location, row in rows:
        pending.append((location, row))
        if len(pending) >= batch_size:
            yield from run(pending)
            pending = []
    if pending:
        yield from run(pending)


def _mappings_only(rows: Iterable[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
    for location, row in rows:
        if not isinstance(row, Mapping):
            raise DataError(f"{location}: expected an object (a row of named columns) for processing_fn, got "
                            f"{type(row).__name__}")
        yield location, row


# -- system_prompt -----------------------------------------------------------------------------------------------------

def with_system_prompt(row: Mapping[str, Any], system_prompt: str) -> dict[str, Any]:
    """The pair with `system_prompt` as a system message at the start of its prompt. A plain-text pair becomes a
    conversation (system + user prompt, assistant completions), so the tokenizer's chat template renders it. A
    conversational prompt that already starts with a system message keeps its own."""
    prompt = row["prompt"]
    if isinstance(prompt, str):
        return {
            "prompt": [{"role": "system", "content": system_prompt}, {"role": "user", "content": prompt}],
            "chosen": [{"role": "assistant", "content": row["chosen"]}],
            "rejected": [{"role": "assistant", "content": row["rejected"]}],
        }
    if prompt and prompt[0]["role"] == "system":
        return dict(row)
    return {**row, "prompt": [{"role": "system", "content": system_prompt}, *prompt]}


def has_own_system_message(row: Mapping[str, Any]) -> bool:
    prompt = row["prompt"]
    return isinstance(prompt, list) and bool(prompt) and prompt[0]["role"] == "system"


def system_prompt_problem(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and value.strip()):
        return None
    return f"must be a non-empty string (the system message), got {value!r}"


# -- split slices ------------------------------------------------------------------------------------------------------

_SLICE = re.compile(r"^\s*(?P<name>[\w.-]+)\s*\[(?P<spec>[^\]]*)\]\s*$")


def split_name(split: str) -> str:
    """`train[:50%]` -> `train`."""
    match = _SLICE.match(split)
    return match.group("name") if match else split


def has_slice(split: str) -> bool:
    return _SLICE.match(split) is not None


def _read_instruction(split: str):
    """`datasets`' reading of a sliced split (a malformed one is a ConfigError that shows the form)."""
    from datasets import ReadInstruction

    try:
        instruction = ReadInstruction.from_spec(split.replace(" ", ""))
    except (ValueError, AssertionError) as exc:
        raise ConfigError(f"split {split!r}: {exc}. Write a slice as e.g. train[:50%], train[100:], "
                          "train[10%:20%]") from None
    if len(instruction._relative_instructions) != 1:  # one per '+' part; we read one split
        raise ConfigError(f"split {split!r}: local files take one split with one slice; concatenate files with "
                          "data_files instead of '+'")
    return instruction


def needs_row_count(split: str) -> bool:
    """Whether the slice depends on the number of rows (a percentage or a negative bound); checks its form."""
    part = _read_instruction(split)._relative_instructions[0]
    return part.unit == "%" or (part.from_ or 0) < 0 or (part.to or 0) < 0


def slice_bounds(split: str, total: int | None) -> tuple[int, int | None]:
    """[start, stop) of a `name[a:b]` split (ints or percents, as `datasets` reads them) over `total` rows;
    `total` is only needed when `needs_row_count(split)`."""
    instruction = _read_instruction(split)
    part = instruction._relative_instructions[0]
    if total is None:
        if needs_row_count(split):
            raise ConfigError(f"split {split!r} needs the number of rows (a percentage or a negative bound)")
        return part.from_ or 0, part.to
    absolute = instruction.to_absolute({part.splitname: total})[0]
    return absolute.from_, absolute.to


def slice_rows(rows: Iterable[tuple[str, Any]], start: int, stop: int | None) -> Iterator[tuple[str, Any]]:
    for index, item in enumerate(rows):
        if stop is not None and index >= stop:
            return
        if index >= start:
            yield item
