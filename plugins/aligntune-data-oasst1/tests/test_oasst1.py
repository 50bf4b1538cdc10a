"""The oasst dataset adapter, on real OpenAssistant files and on small hand-made trees.

Expected pairs are computed here, independently of the adapter, straight from the raw JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from math import comb
from pathlib import Path

import pytest

from aligntune.data import load_preference_data
from aligntune.errors import DataError

HUB_ID = "OpenAssistant/oasst1"


# -- an independent reading of the raw files -------------------------------------------------------------------------


def raw_messages(path: Path) -> list[dict]:
    """Every message of a flat or nested file, nested replies flattened (their parent is the enclosing message)."""
    out: list[dict] = []

    def walk(message: dict, parent_id):
        out.append({**message, "parent_id": parent_id})
        for reply in message.get("replies") or []:
            walk(reply, message["message_id"])

    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            walk(row, row.get("parent_id"))
    return out


def eligible(message: dict, drop_synthetic: bool = True) -> bool:
    return (
        not message.get("deleted")
        and message.get("review_result") is True
        and not (drop_synthetic and message.get("synthetic"))
    )


def ranked_groups(messages: list[dict], drop_synthetic: bool = True) -> dict[tuple[str, ...], list[list[dict]]]:
    """Thread (texts from root to prompter message) -> for each such prompter message with a clean thread in an
    English tree, its eligible ranked assistant replies sorted by rank."""
    by_id = {m["message_id"]: m for m in messages}
    groups: dict[tuple[str, ...], list[list[dict]]] = {}
    for prompt in messages:
        if prompt["role"] != "prompter":
            continue
        thread, node = [], prompt
        while node is not None:
            thread.append(node)
            if node["parent_id"] is None:
                break
            node = by_id.get(node["parent_id"])
        if node is None:  # orphan: the chain breaks before a root
            continue
        thread.reverse()
        if thread[0].get("lang") != "en" or not all(eligible(m, drop_synthetic) for m in thread):
            continue
        replies = sorted(
            (
                m
                for m in messages
                if m["parent_id"] == prompt["message_id"]
                and m["role"] == "assistant"
                and m.get("rank") is not None
                and eligible(m, drop_synthetic)
            ),
            key=lambda m: m["rank"],
        )
        groups.setdefault(tuple(m["text"] for m in thread), []).append(replies)
    return groups


def prompt_key(row: dict) -> tuple[str, ...]:
    return tuple(turn["content"] for turn in row["prompt"])


def response(row: dict, column: str) -> str:
    assert len(row[column]) == 1 and row[column][0]["role"] == "assistant"
    return row[column][0]["content"]


# -- fixtures --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def validation_file(shared_data) -> Path:
    return shared_data / "oasst1" / "oasst1-validation-en.messages.jsonl"


@pytest.fixture(scope="module")
def trees_file(shared_data) -> Path:
    return shared_data / "oasst1" / "oa-export-2023-03-en_100.trees.jsonl"


@pytest.fixture(scope="module")
def loaded(validation_file, trees_file):
    """(file label, pairs mode, drop_synthetic) -> (rows, report, expected groups), each loaded once."""
    cache = {}
    files = {"validation": validation_file, "trees": trees_file}

    def get(label: str, pairs: str, drop_synthetic: bool = True):
        key = (label, pairs, drop_synthetic)
        if key not in cache:
            path = files[label]
            data = load_preference_data(
                HUB_ID, data_files=str(path), split="train", pairs=pairs, drop_synthetic=drop_synthetic
            )
            groups = ranked_groups(raw_messages(path), drop_synthetic)
            cache[key] = (data.dataset.to_list(), data.report, groups)
        return cache[key]

    return get


CASES = [("validation", True), ("trees", True), ("trees", False)]


# -- real data -------------------------------------------------------------------------------------------------------


def test_validation_file_counts(loaded, validation_file):
    rows, report, _ = loaded("validation", "best_vs_worst")
    raw = raw_messages(validation_file)
    ids = {m["message_id"] for m in raw}
    assert report["messages_read"] == len(raw) == 2022
    assert report["trees_read"] == len({m["message_tree_id"] for m in raw}) == 191
    assert report["trees_without_root"] == 3 and report["trees_kept"] == 188
    orphans = [m for m in raw if m["parent_id"] is not None and m["parent_id"] not in ids]
    dropped = report["messages_dropped"]
    assert dropped["orphan"] == len(orphans) == 3
    assert dropped["deleted"] == sum(m["deleted"] for m in raw) == 40
    # Counted once, under the first reason: not_reviewed covers the messages that are not also deleted.
    not_reviewed = [m for m in raw if not m["deleted"] and m["review_result"] is not True and m not in orphans]
    assert dropped["not_reviewed"] == len(not_reviewed)
    assert dropped["wrong_lang"] == 0 and dropped["synthetic"] == 0
    assert report["messages_kept"] + sum(dropped.values()) + report["messages_other_split"] == len(raw)
    assert sum(1 for m in raw if m["role"] == "assistant" and m["rank"] is None) == 110
    assert report["pairs_emitted"] == report["kept"] == len(rows)
    assert report["read"] == report["pairs_built"] == report["kept"] + sum(report["dropped"].values())
    assert report["prompts_kept"] == (
        report["prompts_dropped_thread"]
        + report["prompts_fewer_than_2_ranked_replies"]
        + report["prompts_tied_ranks"]
        + report["prompts_paired"]
    )
    assert report["sources"] == {str(validation_file): "messages"}


def test_trees_file_is_detected_and_synthetic_counted(loaded, trees_file):
    _, report, _ = loaded("trees", "best_vs_worst", True)
    raw = raw_messages(trees_file)
    assert report["sources"] == {str(trees_file): "trees"}
    assert report["messages_read"] == len(raw) and report["trees_read"] == 100
    assert report["messages_dropped"]["synthetic"] == sum(bool(m["synthetic"]) for m in raw) > 0
    _, kept_synthetic, _ = loaded("trees", "best_vs_worst", False)
    assert kept_synthetic["messages_dropped"]["synthetic"] == 0
    assert kept_synthetic["pairs_emitted"] > report["pairs_emitted"]


@pytest.mark.parametrize(("label", "drop_synthetic"), CASES)
def test_best_vs_worst_is_one_pair_per_prompt_with_min_and_max_rank(loaded, label, drop_synthetic):
    rows, report, groups = loaded(label, "best_vs_worst", drop_synthetic)
    expected = Counter()
    identical = 0
    for key, reply_lists in groups.items():
        for replies in reply_lists:
            if len(replies) >= 2:
                best, worst = replies[0], replies[-1]
                assert best["rank"] < worst["rank"]
                if best["text"] == worst["text"]:
                    identical += 1
                else:
                    expected[(key, best["text"], worst["text"])] += 1
    got = Counter((prompt_key(r), response(r, "chosen"), response(r, "rejected")) for r in rows)
    assert got == expected
    assert report["prompts_paired"] == report["pairs_built"] == sum(expected.values()) + identical
    assert report["dropped"] == ({"identical_chosen_rejected": identical} if identical else {})


@pytest.mark.parametrize(("label", "drop_synthetic"), CASES)
def test_all_pairs_count_is_sum_of_k_choose_2(loaded, label, drop_synthetic):
    rows, report, groups = loaded(label, "all", drop_synthetic)
    total = sum(comb(len(replies), 2) for reply_lists in groups.values() for replies in reply_lists)
    assert report["pairs_built"] == total
    assert len(rows) == total - report["dropped"].get("identical_chosen_rejected", 0)


@pytest.mark.parametrize("pairs", ["best_vs_worst", "all"])
@pytest.mark.parametrize(("label", "drop_synthetic"), CASES)
def test_every_pair_obeys_rank_order_and_filters(loaded, label, drop_synthetic, pairs):
    rows, _, groups = loaded(label, pairs, drop_synthetic)
    assert rows
    for row in rows:
        # The thread must be one of the clean threads (no deleted/unreviewed/synthetic message, English root) ...
        reply_lists = groups[prompt_key(row)]
        chosen, rejected = response(row, "chosen"), response(row, "rejected")
        # ... and both responses eligible ranked siblings under it, chosen strictly better.
        ok = False
        for replies in reply_lists:
            chosen_ranks = [m["rank"] for m in replies if m["text"] == chosen]
            rejected_ranks = [m["rank"] for m in replies if m["text"] == rejected]
            if chosen_ranks and rejected_ranks:
                assert min(chosen_ranks) < max(rejected_ranks)
                ok = True
        assert ok, f"pair not found among eligible siblings: {row}"
        roles = [turn["role"] for turn in row["prompt"]]
        assert roles[0] == "user" and roles[-1] == "user"
        assert all(a != b for a, b in zip(roles, roles[1:])), roles


def test_no_pair_touches_a_dropped_message(loaded, validation_file):
    rows, _, _ = loaded("validation", "all")
    raw = raw_messages(validation_file)
    bad = {m["text"] for m in raw if not eligible(m)}
    good = {m["text"] for m in raw if eligible(m)}
    only_bad = bad - good  # texts that exist only in dropped messages
    assert only_bad
    for row in rows:
        texts = [*prompt_key(row), response(row, "chosen"), response(row, "rejected")]
        assert not only_bad.intersection(texts)


def test_holdout_split_is_disjoint_by_tree_and_deterministic(validation_file):
    def load(split):
        return load_preference_data(HUB_ID, data_files=str(validation_file), split=split, holdout_fraction=0.25)

    train, test, again = load("train"), load("test"), load("validation")
    full = load_preference_data(HUB_ID, data_files=str(validation_file), split="train")
    assert again.dataset.to_list() == test.dataset.to_list()  # "validation" is the same held-out side
    assert load("train").dataset.to_list() == train.dataset.to_list()
    assert train.report["trees_kept"] + test.report["trees_kept"] == full.report["trees_kept"]
    assert train.report["trees_other_split"] == test.report["trees_kept"]
    assert 0.1 < test.report["trees_kept"] / full.report["trees_kept"] < 0.4
    assert len(train.dataset) + len(test.dataset) == len(full.dataset)
    # A tree is named by its root text (unique among the roots of this file).
    roots = [m["text"] for m in raw_messages(validation_file) if m["parent_id"] is None]
    assert len(roots) == len(set(roots))
    train_trees = {row["prompt"][0]["content"] for row in train.dataset}
    test_trees = {row["prompt"][0]["content"] for row in test.dataset}
    assert train_trees and test_trees and not train_trees & test_trees
    with pytest.raises(DataError, match="'train' for the kept trees"):
        load("dev-2")


def test_strict_stops_at_first_dropped_message(validation_file):
    with pytest.raises(DataError, match=r"line 74: message \S+ dropped \(deleted.*strict mode stops here"):
        load_preference_data(HUB_ID, data_files=str(validation_file), strict=True)


def test_max_samples(validation_file):
    data = load_preference_data(HUB_ID, data_files=str(validation_file), max_samples=10)
    assert len(data.dataset) == 10 and data.report["pairs_emitted"] == 10


def test_hub_rows_are_read_like_the_file(validation_file, monkeypatch):
    import datasets

    rows = [json.loads(line) for line in validation_file.read_text(encoding="utf-8").splitlines()]
    calls = []

    def fake_load_dataset(name, config=None, split=None):
        calls.append((name, config, split))
        return datasets.Dataset.from_list(rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    from_hub = load_preference_data("openassistant/OASST1", split="validation")
    from_file = load_preference_data(HUB_ID, data_files=str(validation_file))
    assert calls == [("openassistant/OASST1", None, "validation")]
    assert from_hub.dataset.to_list() == from_file.dataset.to_list()
    assert from_hub.report["sources"] == {"openassistant/OASST1 [validation]": "messages"}


def test_hub_failure_says_what_to_check(monkeypatch):
    # The real datasets.load_dataset, offline (no network here): its failure becomes a DataError that says what to do.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match=r"cannot load 'OpenAssistant/oasst2'.*data_files="):
        load_preference_data("OpenAssistant/oasst2", split="train")


# -- a small hand-made tree with known ranks -------------------------------------------------------------------------


def message(message_id, role, text, *, rank=None, replies=(), **flags):
    values = {"deleted": False, "review_result": True, "synthetic": False, "lang": "en", **flags}
    return {"message_id": message_id, "role": role, "text": text, "rank": rank, **values, "replies": list(replies)}


def user(content):
    return {"role": "user", "content": content}


def bot(content):
    return {"role": "assistant", "content": content}


@pytest.fixture
def small_trees(tmp_path) -> Path:
    tree = message(
        "p1",
        "prompter",
        "What is 2+2?",
        replies=[
            message("a-null", "assistant", "Maybe four?", rank=None),
            message("a2", "assistant", "5", rank=2),
            message("a-deleted", "assistant", "22", rank=1, deleted=True),
            message(
                "a0",
                "assistant",
                "4",
                rank=0,
                replies=[
                    message(
                        "p2",
                        "prompter",
                        "And 3+3?",
                        replies=[
                            message("b0", "assistant", "6", rank=0),
                            message("b1", "assistant", "7", rank=1, review_result=None),
                        ],
                    )
                ],
            ),
        ],
    )
    german = message(
        "q1",
        "prompter",
        "Was ist 1+1?",
        lang="de",
        replies=[
            message("c0", "assistant", "2", rank=0, lang="de"),
            message("c1", "assistant", "3", rank=1, lang="de"),
        ],
    )
    path = tmp_path / "small.trees.jsonl"
    path.write_text(json.dumps(tree) + "\n" + json.dumps(german) + "\n", encoding="utf-8")
    return path


def test_small_tree_best_vs_worst_exact(small_trees):
    data = load_preference_data(HUB_ID, data_files=str(small_trees))
    assert data.dataset.to_list() == [{"prompt": [user("What is 2+2?")], "chosen": [bot("4")], "rejected": [bot("5")]}]
    report = data.report
    assert report["messages_read"] == 11 and report["trees_read"] == 2
    assert report["trees_kept"] == 1 and report["trees_wrong_lang"] == 1
    assert report["messages_dropped"] == {
        "orphan": 0,
        "wrong_lang": 3,
        "deleted": 1,
        "not_reviewed": 1,
        "synthetic": 0,
    }
    assert report["replies_kept_unranked"] == 1
    assert report["prompts_kept"] == 2 and report["prompts_paired"] == 1
    assert report["prompts_fewer_than_2_ranked_replies"] == 1  # p2: b1 is not reviewed
    assert report["pairs_emitted"] == 1 and report["read"] == 1 and report["dropped"] == {}


def test_small_tree_all_pairs_and_relaxed_filters(small_trees):
    relaxed = load_preference_data(
        HUB_ID, data_files=[str(small_trees)], pairs="all", lang=None, drop_deleted=False, require_review=False
    )
    assert relaxed.dataset.to_list() == [
        {"prompt": [user("What is 2+2?")], "chosen": [bot("4")], "rejected": [bot("22")]},
        {"prompt": [user("What is 2+2?")], "chosen": [bot("4")], "rejected": [bot("5")]},
        {"prompt": [user("What is 2+2?")], "chosen": [bot("22")], "rejected": [bot("5")]},
        {"prompt": [user("What is 2+2?"), bot("4"), user("And 3+3?")], "chosen": [bot("6")], "rejected": [bot("7")]},
        {"prompt": [user("Was ist 1+1?")], "chosen": [bot("2")], "rejected": [bot("3")]},
    ]
    only_german = load_preference_data(HUB_ID, data_files={"train": str(small_trees)}, lang=["DE"])
    assert only_german.report["trees_kept"] == 1 and len(only_german.dataset) == 1


def test_deleted_message_in_thread_drops_the_pairs_below(tmp_path):
    rows = [
        {"message_id": "r", "parent_id": None, "role": "prompter", "text": "Hi", "review_result": True, "lang": "en"},
        {"message_id": "x", "parent_id": "r", "role": "assistant", "text": "Hello", "rank": 0, "deleted": True},
        {"message_id": "y", "parent_id": "x", "role": "prompter", "text": "Tell me a joke", "review_result": True},
        {"message_id": "z0", "parent_id": "y", "role": "assistant", "text": "Knock knock", "rank": 0},
        {"message_id": "z1", "parent_id": "y", "role": "assistant", "text": "No", "rank": 1},
        {"message_id": "o", "parent_id": "gone", "role": "assistant", "text": "Orphan", "rank": 0},
    ]
    for row in rows[1:]:
        row.setdefault("review_result", True)
    path = tmp_path / "flat.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(DataError, match="no usable preference pairs.*passes through a dropped message"):
        load_preference_data(HUB_ID, data_files=str(path))
    kept = load_preference_data(HUB_ID, data_files=str(path), drop_deleted=False)
    assert [response(r, "chosen") for r in kept.dataset] == ["Knock knock"]
    assert kept.report["messages_dropped"]["orphan"] == 1 and kept.report["trees_without_root"] == 1
    with pytest.raises(DataError, match=r"flat.jsonl, line 6: message o dropped \(orphan"):
        load_preference_data(HUB_ID, data_files=str(path), drop_deleted=False, strict=True)


# -- errors ----------------------------------------------------------------------------------------------------------


def test_bad_json_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    good = {"message_id": "a", "parent_id": None, "role": "prompter", "text": "hi"}
    path.write_text(json.dumps(good) + "\n" + '{"message_id": "b", oops}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.jsonl, line 2, column \d+: invalid JSON"):
        load_preference_data(HUB_ID, data_files=str(path))


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ([1, 2], r"line 1: expected an OpenAssistant message or tree \(an object\), got list"),
        ({"message_id": "a", "role": "prompter"}, r"line 1: missing key 'text'"),
        ({"message_id": "a", "role": "user", "text": "hi"}, r"line 1, key 'role': expected one of 'prompter'"),
        ({"message_id": 7, "role": "prompter", "text": "hi"}, r"line 1, key 'message_id': expected a string"),
        (
            {**message("a", "prompter", "hi"), "replies": [{"message_id": "b", "role": "assistant"}]},
            r"line 1, replies\[0\]: missing key 'text'",
        ),
        (
            {**message("a", "prompter", "hi"), "replies": [{**message("b", "assistant", "x"), "rank": "1"}]},
            r"line 1, replies\[0\], key 'rank': expected an integer",
        ),
        ({"message_id": "a", "role": "prompter", "text": "hi", "deleted": "no"}, r"key 'deleted': expected true"),
    ],
)
def test_malformed_rows_are_errors_with_location(tmp_path, row, message):
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=message):
        load_preference_data(HUB_ID, data_files=str(path))


def test_duplicate_message_ids_are_an_error(small_trees):
    with pytest.raises(DataError, match="already read at"):
        load_preference_data(HUB_ID, data_files=[str(small_trees), str(small_trees)])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"pairs": "bogus"}, r"pairs='bogus' is not valid; valid values: 'best_vs_worst', 'all'"),
        ({"holdout_fraction": 1.5}, r"holdout_fraction=1.5 is not valid"),
        ({"lang": ""}, r"lang='' is not valid"),
        ({"require_review": "yes"}, r"require_review='yes' is not valid; valid values: True, False"),
        ({"data_files": "/nonexistent/oasst.jsonl"}, r"data file not found"),
        ({"data_files": {"test": "x.jsonl"}}, r"data_files has no entry for split 'train'"),
    ],
)
def test_bad_options_are_errors(small_trees, options, message):
    options = {"data_files": str(small_trees), **options}
    with pytest.raises(DataError, match=message):
        load_preference_data(HUB_ID, **options)


def test_unsupported_file_type(tmp_path):
    path = tmp_path / "messages.csv"
    path.write_text("message_id,role,text\n", encoding="utf-8")
    with pytest.raises(DataError, match="unsupported file type"):
        load_preference_data(HUB_ID, data_files=str(path))


# -- the plugin ------------------------------------------------------------------------------------------------------


def test_plugin_claims_both_hub_ids_and_stays_light():
    from aligntune.plugins import resolve_dataset_adapter

    for name in ("OpenAssistant/oasst1", "openassistant/OASST2"):
        spec = resolve_dataset_adapter(name)
        assert spec.name == "oasst"
        assert spec.options == {
            "pairs": "best_vs_worst",
            "lang": "en",
            "drop_deleted": True,
            "require_review": True,
            "drop_synthetic": True,
            "holdout_fraction": 0.0,
        }
    code = "import sys, aligntune_data_oasst1; print(sorted({'datasets', 'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_equal_ranks_are_never_paired(tmp_path):
    def reply(message_id, rank, text):
        return message(message_id, "assistant", text, rank=rank)

    tied = message("t", "prompter", "Pick one", replies=[reply("t0", 0, "A"), reply("t1", 0, "B")])
    mixed = message(
        "m", "prompter", "Pick two", replies=[reply("m0", 0, "A"), reply("m1", 0, "B"), reply("m2", 1, "C")]
    )
    path = tmp_path / "ties.jsonl"
    path.write_text(json.dumps(tied) + "\n" + json.dumps(mixed) + "\n", encoding="utf-8")
    data = load_preference_data(HUB_ID, data_files=str(path), pairs="all")
    assert [(response(r, "chosen"), response(r, "rejected")) for r in data.dataset] == [("A", "C"), ("B", "C")]
    assert data.report["prompts_tied_ranks"] == 1 and data.report["prompts_paired"] == 1
    best = load_preference_data(HUB_ID, data_files=str(path))
    assert [(response(r, "chosen"), response(r, "rejected")) for r in best.dataset] == [("A", "C")]


def test_gzip_json_list_and_wrapped_exports_read_the_same(small_trees, tmp_path):
    import gzip

    expected = load_preference_data(HUB_ID, data_files=str(small_trees), lang=None).dataset.to_list()
    trees = [json.loads(line) for line in small_trees.read_text(encoding="utf-8").splitlines()]
    gz = tmp_path / "trees.jsonl.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(tree) + "\n" for tree in trees)
    as_list = tmp_path / "trees.json"
    as_list.write_text(json.dumps(trees), encoding="utf-8")
    # The official export wraps each tree: {"message_tree_id", "tree_state", "prompt": root message}.
    wrapped = tmp_path / "wrapped.trees.jsonl"
    rows = [{"message_tree_id": t["message_id"], "tree_state": "ready_for_export", "prompt": t} for t in trees]
    wrapped.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    for path in (gz, as_list, wrapped, tmp_path / "*.jsonl.gz"):
        data = load_preference_data(HUB_ID, data_files=str(path), lang=None)
        assert data.dataset.to_list() == expected, path
        assert set(data.report["sources"].values()) == {"trees"}
