"""One `data_files` resolver (aligntune.data.files), the same rules through every adapter: the core's `preference`
adapter, hh-rlhf and oasst1 each read a file, a PathLike, a list, a glob, a {split: paths} mapping, a directory and
sliced splits, and fail with the same clear errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aligntune.data import load_preference_data
from aligntune.data.files import DataFiles, resolve_data_files
from aligntune.errors import DataError

PAIRS = 10  # 5 per shard


def _preference(index: int) -> list[dict[str, Any]]:
    return [{"prompt": f"question {index}", "chosen": f"good {index}", "rejected": f"bad {index}"}]


def _hh_rlhf(index: int) -> list[dict[str, Any]]:
    prompt = f"\n\nHuman: question {index}\n\nAssistant:"
    return [{"chosen": f"{prompt} good {index}", "rejected": f"{prompt} bad {index}"}]


def _oasst(index: int) -> list[dict[str, Any]]:
    """One tree as flat messages: a prompt and two ranked replies (three rows, one pair)."""
    flags = {"deleted": False, "review_result": True, "synthetic": False, "lang": "en"}
    root = f"p{index}"
    return [
        {"message_id": root, "parent_id": None, "role": "prompter", "text": f"question {index}", "rank": None,
         **flags},
        {"message_id": f"{root}-a", "parent_id": root, "role": "assistant", "text": f"good {index}", "rank": 0,
         **flags},
        {"message_id": f"{root}-b", "parent_id": root, "role": "assistant", "text": f"bad {index}", "rank": 1,
         **flags},
    ]


ADAPTERS: dict[str, tuple[str, Callable[[int], list[dict[str, Any]]]]] = {
    "preference": ("my-pairs", _preference),
    "hh-rlhf": ("Anthropic/hh-rlhf", _hh_rlhf),
    "oasst1": ("OpenAssistant/oasst1", _oasst),
}


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture(params=sorted(ADAPTERS))
def adapter(request, tmp_path) -> tuple[str, Path]:
    """(dataset name, a folder with shards/part-0.jsonl and shards/part-1.jsonl, and whole/train.jsonl)."""
    name, rows = ADAPTERS[request.param]
    for shard in (0, 1):
        _write(tmp_path / "shards" / f"part-{shard}.jsonl",
               [row for index in range(shard * 5, shard * 5 + 5) for row in rows(index)])
    _write(tmp_path / "whole" / "train.jsonl", [row for index in range(PAIRS) for row in rows(index)])
    return name, tmp_path


def _questions(name: str, **kwargs: Any) -> list[int]:
    """The question numbers of the pairs loaded, in order."""
    data = load_preference_data(name, **kwargs)
    numbers = []
    for row in data.dataset:
        prompt = row["prompt"] if isinstance(row["prompt"], str) else row["prompt"][-1]["content"]
        numbers.append(int(prompt.split("question ")[1].split()[0].rstrip(":")))
    return sorted(numbers)


def test_every_form_of_data_files_reads_the_same_pairs_through_every_adapter(adapter):
    name, root = adapter
    shards = root / "shards"
    first, second = shards / "part-0.jsonl", shards / "part-1.jsonl"
    everything = list(range(PAIRS))
    assert _questions(name, data_files=str(first)) == [0, 1, 2, 3, 4]
    assert _questions(name, data_files=second) == [5, 6, 7, 8, 9]  # an os.PathLike
    assert _questions(name, data_files=[str(first), second]) == everything  # a list, mixed str and PathLike
    assert _questions(name, data_files=str(shards / "part-*.jsonl")) == everything  # a glob
    assert _questions(name, data_files=str(root / "**" / "part-1.jsonl")) == [5, 6, 7, 8, 9]  # a recursive glob
    assert _questions(name, data_files={"train": [str(first)], "test": str(second)}, split="test") == [5, 6, 7, 8, 9]
    assert _questions(name, data_files=str(root / "whole")) == everything  # a directory with train.jsonl


def test_sliced_splits_through_every_adapter(adapter):
    """A slice keeps the rows `datasets` would keep, counted over the split's files in order (for oasst1 the rows are
    messages, three per tree here, so a slice of whole trees keeps whole pairs)."""
    name, root = adapter
    files = [str(root / "shards" / "part-0.jsonl"), str(root / "shards" / "part-1.jsonl")]
    assert _questions(name, data_files=files, split="train[:30%]") == [0, 1, 2]
    assert _questions(name, data_files=files, split="train[50%:]") == [5, 6, 7, 8, 9]  # crosses into the 2nd file
    assert _questions(name, data_files={"train": files}, split="train[-20%:]") == [8, 9]  # mapping: by split name
    with pytest.raises(Exception, match=r"Write a slice as e\.g\. train\[:50%\]"):
        load_preference_data(name, data_files=files, split="train[:abc]")


@pytest.mark.parametrize(
    ("data_files", "message"),
    [
        ("{root}/absent.jsonl", r"data file not found: .*absent\.jsonl"),
        ("absent-relative.jsonl", r"data file not found: absent-relative\.jsonl \(relative paths are read from"),
        ("{root}/shards/*.parquet", r"data_files pattern '.*\*\.parquet' matches no file"),
        ({"test": "{root}/shards/part-0.jsonl"}, r"data_files has no entry for split 'train'; it has: test\. Add"),
        ([], r"data_files is empty: give at least one file"),
        (["{root}/shards/part-0.jsonl", 3], r"data_files: expected paths, got int 3"),
        (7, r"data_files: expected a path, a list of paths, or a mapping split -> paths, got int 7"),
    ],
)
def test_the_same_clear_errors_through_every_adapter(adapter, data_files, message):
    name, root = adapter

    def filled(value: Any) -> Any:
        if isinstance(value, str):
            return value.format(root=root)
        if isinstance(value, dict):
            return {key: filled(item) for key, item in value.items()}
        if isinstance(value, list):
            return [filled(item) for item in value]
        return value

    with pytest.raises(DataError, match=message):
        load_preference_data(name, data_files=filled(data_files))


def test_the_resolver_on_its_own(tmp_path):
    """What a third-party adapter gets: the files, and their rows with the slice applied; None for a hub id."""
    first = _write(tmp_path / "a.jsonl", [{"n": 0}, {"n": 1}])
    second = _write(tmp_path / "b.jsonl", [{"n": 2}, {"n": 3}])
    assert resolve_data_files(None, "train", dataset_name="org/some-hub-dataset") is None
    files = resolve_data_files(str(tmp_path / "*.jsonl"), "train[1:3]")
    assert files == DataFiles(paths=(first, second), split="train[1:3]")
    assert files.split_name == "train"
    assert [row["n"] for _, row in files.rows()] == [1, 2]
    assert [(path.name, [row["n"] for _, row in rows]) for path, rows in files.by_file()] == [
        ("a.jsonl", [1]), ("b.jsonl", [2])]
    by_name = resolve_data_files(None, "train", dataset_name=str(tmp_path / "a.jsonl"))
    assert by_name is not None and by_name.paths == (first,)
    with pytest.raises(DataError, match=r"dataset file not found: .*missing\.jsonl"):
        resolve_data_files(None, "train", dataset_name=str(tmp_path / "missing.jsonl"))
    with pytest.raises(DataError, match=r"c\.txt: unsupported file type; use \.jsonl, \.json"):
        resolve_data_files(str(_write(tmp_path / "c.txt", [])), "train")
    assert resolve_data_files(str(tmp_path / "c.txt"), "train", formats=None).paths == (tmp_path / "c.txt",)
