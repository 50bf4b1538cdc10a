"""Converting Anthropic hh-rlhf rows (`{"chosen": conversation, "rejected": conversation}`) to preference pairs.

Each side is split at its last "\\n\\nAssistant:": the prompt is everything up to and including that marker, the
response is the rest (with its leading space). A pair is kept only if both sides give the same prompt, neither
response contains a turn marker, neither response is empty, and the responses differ; every other pair is
dropped and counted by reason.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import structlog

from aligntune.data import DatasetRequest, DropReport, PreferenceData, rows_to_dataset, validate_rows
from aligntune.data.files import DataFiles, DirectoryLayout, resolve_data_files
from aligntune.data.readers import iter_jsonl
from aligntune_data_hh_rlhf import SUBSETS

log = structlog.get_logger("aligntune.data.hh_rlhf")

ASSISTANT = "\n\nAssistant:"
HUMAN = "\n\nHuman:"
FORMATS = ("standard", "conversational")
ON_MALFORMED = ("error", "skip")
_TURN = re.compile(r"(\n\nHuman:|\n\nAssistant:)")


class HHRLHFError(Exception):
    """Raised for rows or options that cannot be converted (wrapped into the core's DataError)."""


def split_side(conversation: str) -> tuple[str, str] | None:
    """(prompt up to and including the last assistant marker, response) or None without an assistant turn."""
    cut = conversation.rfind(ASSISTANT)
    if cut < 0:
        return None
    end = cut + len(ASSISTANT)
    return conversation[:end], conversation[end:]


def convert_pair(chosen: str, rejected: str) -> tuple[dict[str, str] | None, str | None]:
    """The standard-format row for one hh-rlhf pair, or (None, reason it is dropped)."""
    chosen_split, rejected_split = split_side(chosen), split_side(rejected)
    if chosen_split is None or rejected_split is None:
        return None, "no_assistant_turn"
    (prompt, chosen_response), (rejected_prompt, rejected_response) = chosen_split, rejected_split
    if prompt != rejected_prompt:
        return None, "prompt_mismatch"
    if HUMAN in chosen_response or HUMAN in rejected_response:
        return None, "response_contains_human_turn"
    if not chosen_response.strip():
        return None, "empty_chosen"
    if not rejected_response.strip():
        return None, "empty_rejected"
    if chosen_response == rejected_response:
        return None, "identical_responses"
    return {"prompt": prompt, "chosen": chosen_response, "rejected": rejected_response}, None


def prompt_messages(prompt: str) -> list[dict[str, str]]:
    """The prompt as user/assistant turns (the trailing, empty assistant marker is the generation point)."""
    pieces = _TURN.split(prompt)
    messages = []
    preamble = pieces[0].strip()
    for marker, text in zip(pieces[1::2], pieces[2::2]):
        role = "user" if marker == HUMAN else "assistant"
        messages.append({"role": role, "content": text.strip()})
    if messages and messages[-1]["role"] == "assistant" and not messages[-1]["content"]:
        messages.pop()
    if preamble and messages:
        messages[0]["content"] = f"{preamble}\n\n{messages[0]['content']}".strip()
    return messages


def to_conversational(row: dict[str, str]) -> dict[str, Any]:
    return {
        "prompt": prompt_messages(row["prompt"]),
        "chosen": [{"role": "assistant", "content": row["chosen"].strip()}],
        "rejected": [{"role": "assistant", "content": row["rejected"].strip()}],
    }


# -- sources -------------------------------------------------------------------------------------------------------


def _subsets(request: DatasetRequest) -> tuple[str, ...] | None:
    chosen = request.options.get("data_dir") or request.dataset_config
    if chosen is None:
        return None
    names = [chosen] if isinstance(chosen, str) else list(chosen)
    unknown = [name for name in names if name not in SUBSETS]
    if unknown:
        raise HHRLHFError(f"unknown hh-rlhf subset {unknown[0]!r}; the subsets are: {', '.join(SUBSETS)}")
    return tuple(names)


def _split_file(directory: Path, split: str) -> Path | None:
    for suffix in (".jsonl.gz", ".jsonl"):
        candidate = directory / f"{split}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def hub_layout(subsets: tuple[str, ...] | None, produced: set[Path]) -> DirectoryLayout:
    """A directory laid out like the hub repo (`<subset>/<split>.jsonl.gz`) or holding `<split>.jsonl(.gz)` itself;
    the files it picks are added to `produced`."""

    def layout(directory: Path, split: str, _formats: Collection[str] | None) -> list[Path]:
        direct = _split_file(directory, split)
        if direct is not None and subsets is None:
            produced.add(direct)
            return [direct]
        files = []
        for subset in subsets or SUBSETS:
            found = _split_file(directory / subset, split)
            if found is None:
                if subsets is not None:
                    raise HHRLHFError(f"no {split}.jsonl(.gz) for subset {subset!r} under {directory}")
                continue
            files.append(found)
        if not files:
            raise HHRLHFError(
                f"{directory}: no {split}.jsonl(.gz) here or in subset folders ({', '.join(SUBSETS)})"
            )
        produced.update(files)
        return files

    return layout


def local_files(request: DatasetRequest, subsets: tuple[str, ...] | None) -> DataFiles | None:
    """The local files of the request (aligntune.data.files: files, directories, globs, lists, {split: paths},
    sliced splits), a directory read with the hub repo's layout; None for the hub."""
    produced: set[Path] = set()
    files = resolve_data_files(request.data_files, request.split, dataset_name=request.dataset_name,
                               layout=hub_layout(subsets, produced), formats=None)  # any name: read as JSON Lines
    if files is not None and subsets is not None:
        named = [path for path in files.paths if path not in produced]
        if named:
            raise HHRLHFError(
                f"a subset ({', '.join(subsets)}) was chosen but data_files names the file {named[0]}; point "
                "data_files at the directory holding the subset folders, or drop the subset"
            )
    return files


def _hub_rows(request: DatasetRequest, subsets: tuple[str, ...] | None) -> Iterator[tuple[str, Any]]:
    import datasets

    for subset in subsets or (None,):
        try:
            data = datasets.load_dataset(request.dataset_name, data_dir=subset, split=request.split)
        except (FileNotFoundError, ConnectionError, OSError, ValueError) as exc:
            raise HHRLHFError(
                f"cannot load {request.dataset_name!r} (subset {subset or 'all'}, split {request.split!r}) from the "
                f"Hugging Face Hub: {exc}. For a local copy pass data_files= (a .jsonl/.jsonl.gz file or the "
                "directory holding the subset folders)."
            ) from None
        for index, row in enumerate(data):
            yield f"{request.dataset_name} [{subset or 'all'}/{request.split}] row {index}", row


# -- conversion ----------------------------------------------------------------------------------------------------


def _check_option(request: DatasetRequest, name: str, valid: tuple[str, ...]) -> str:
    value = request.options.get(name)
    if value not in valid:
        raise HHRLHFError(f"hh-rlhf option {name}={value!r} is not valid; use one of: {', '.join(valid)}")
    return value


def converted_rows(
    raw: Iterator[tuple[str, Any]], *, conversational: bool, skip_malformed: bool, strict: bool, dropped: Counter
) -> Iterator[tuple[str, dict[str, Any]]]:
    for location, value in raw:
        problem = None
        if not isinstance(value, dict):
            problem = f"expected an object with 'chosen' and 'rejected', got {type(value).__name__}"
        else:
            missing = [key for key in ("chosen", "rejected") if key not in value]
            wrong = [key for key in ("chosen", "rejected") if key in value and not isinstance(value[key], str)]
            if missing:
                problem = f"missing key(s) {', '.join(missing)}; found: {', '.join(sorted(value)) or 'none'}"
            elif wrong:
                problem = f"key {wrong[0]!r} must be a string, got {type(value[wrong[0]]).__name__}"
        if problem is not None:
            if not skip_malformed:
                raise HHRLHFError(f"{location}: {problem} (pass on_malformed='skip' to count and skip such lines)")
            dropped["malformed"] += 1
            continue
        row, reason = convert_pair(value["chosen"], value["rejected"])
        if row is None:
            if strict:
                raise HHRLHFError(f"{location}: pair dropped ({reason.replace('_', ' ')}); strict mode stops here")
            dropped[reason] += 1
            continue
        yield location, to_conversational(row) if conversational else row


def load(request: DatasetRequest) -> PreferenceData:
    from aligntune.errors import DataError

    try:
        conversational = _check_option(request, "format", FORMATS) == "conversational"
        skip_malformed = _check_option(request, "on_malformed", ON_MALFORMED) == "skip"
        subsets = _subsets(request)
        dropped: Counter = Counter()
        read = Counter()

        def count_invalid(message: str) -> None:
            if not skip_malformed:
                raise HHRLHFError(f"{message} (pass on_malformed='skip' to count and skip such lines)")
            dropped["malformed"] += 1
            read["rows"] += 1

        files = local_files(request, subsets)
        if files is not None:
            # A percentage slice counts the lines first: that pass must not count invalid lines as dropped twice.
            raw: Iterator[tuple[str, Any]] = files.rows(lambda path: iter_jsonl(path, count_invalid),
                                                        count=lambda path: iter_jsonl(path, lambda _message: None))
        else:
            raw = _hub_rows(request, subsets)

        def counted(items):
            for item in items:
                read["rows"] += 1
                yield item

        report = DropReport()
        rows = converted_rows(counted(raw), conversational=conversational, skip_malformed=skip_malformed,
                              strict=request.strict, dropped=dropped)
        dataset = rows_to_dataset(validate_rows(rows, report=report, strict=request.strict,
                                                max_samples=request.max_samples))
    except HHRLHFError as exc:
        raise DataError(str(exc)) from None
    report.read = read["rows"]
    report.dropped.update(dropped)
    summary = report.as_dict()
    log.info("converted hh-rlhf pairs", split=request.split, subsets=list(subsets or SUBSETS), **summary)
    if len(dataset) == 0:
        raise DataError(f"no usable hh-rlhf pairs in split {request.split!r} ({summary})")
    return PreferenceData(dataset=dataset, report=summary)
