"""The hh-rlhf loader on the real test files (../shared/data/hh-rlhf), plus malformed input."""

from __future__ import annotations

import gzip
import json

import pytest

from aligntune.data import load_preference_data, load_preference_dataset
from aligntune.errors import DataError

SUBSETS = ("harmless-base", "helpful-base", "helpful-online", "helpful-rejection-sampled")
PAIRS = {"harmless-base": 2312, "helpful-base": 2354, "helpful-online": 1137, "helpful-rejection-sampled": 2749}


@pytest.fixture(scope="module")
def hh_dir(shared_data):
    return shared_data / "hh-rlhf"


def _raw(hh_dir, subset):
    with gzip.open(hh_dir / subset / "test.jsonl.gz", "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def _load(hh_dir, **options):
    return load_preference_data("Anthropic/hh-rlhf", data_files=str(hh_dir), split="test", **options)


@pytest.mark.parametrize("subset", SUBSETS)
def test_every_kept_pair_round_trips_to_the_original_strings(hh_dir, subset):
    raw = _raw(hh_dir, subset)
    assert len(raw) == PAIRS[subset]
    data = _load(hh_dir, dataset_config=subset)
    originals = {(r["chosen"], r["rejected"]) for r in raw}
    rows = data.dataset.to_list()
    for row in rows:
        assert (row["prompt"] + row["chosen"], row["prompt"] + row["rejected"]) in originals
        assert row["prompt"].endswith("\n\nAssistant:")
        for response in (row["chosen"], row["rejected"]):
            assert "\n\nHuman:" not in response and "\n\nAssistant:" not in response and response.strip()
        assert row["chosen"] != row["rejected"]
    report = data.report
    assert report["read"] == len(raw)
    assert report["kept"] == len(rows)
    assert report["kept"] + sum(report["dropped"].values()) == len(raw)


def test_all_subsets_by_default_and_the_totals(hh_dir):
    data = _load(hh_dir)
    assert data.report["read"] == sum(PAIRS.values()) == 8552
    # Independent count of pairs a lossless split must drop: sides whose text up to the last assistant turn
    # differs, sides ending on a human turn, empty replies, identical pairs.
    expected_drops = 0
    for subset in SUBSETS:
        for r in _raw(hh_dir, subset):
            c_prompt, _, c_reply = r["chosen"].rpartition("\n\nAssistant:")
            r_prompt, _, r_reply = r["rejected"].rpartition("\n\nAssistant:")
            if (c_prompt != r_prompt or "\n\nHuman:" in c_reply + r_reply or not c_reply.strip()
                    or not r_reply.strip() or c_reply == r_reply):
                expected_drops += 1
    assert sum(data.report["dropped"].values()) == expected_drops
    assert data.report["kept"] == 8552 - expected_drops


# Rows checked by hand (line numbers are 1-based lines of <subset>/test.jsonl.gz).
HAND_CHECKED = [
    ("harmless-base", 87, "empty_chosen"),  # chosen ends "Assistant: " (nothing said)
    ("harmless-base", 1255, "prompt_mismatch"),  # the two conversations diverge before the last assistant turn
    ("helpful-base", 121, "empty_rejected"),
    ("helpful-base", 722, "identical_responses"),
    ("helpful-online", 786, "response_contains_human_turn"),  # rejected ends on a Human turn
    ("harmless-base", 1, None),  # an ordinary pair is kept
]


@pytest.mark.parametrize(("subset", "line", "reason"), HAND_CHECKED)
def test_hand_checked_rows_are_dropped_for_the_right_reason(hh_dir, tmp_path, subset, line, reason):
    raw_line = gzip.open(hh_dir / subset / "test.jsonl.gz", "rt", encoding="utf-8").read().splitlines()[line - 1]
    single = tmp_path / "one.jsonl"
    single.write_text(raw_line + "\n" + json.dumps({"chosen": "\n\nHuman: hi\n\nAssistant: hello",
                                                    "rejected": "\n\nHuman: hi\n\nAssistant: go away"}) + "\n")
    data = load_preference_data("Anthropic/hh-rlhf", data_files=str(single))
    if reason is None:
        assert data.report["kept"] == 2 and data.report["dropped"] == {}
    else:
        assert data.report["dropped"] == {reason: 1} and data.report["kept"] == 1


def test_strict_mode_raises_on_the_first_dropped_row_with_its_line(hh_dir):
    with pytest.raises(DataError, match=r"harmless-base/test.jsonl.gz, line 87: pair dropped \(empty chosen\)"):
        _load(hh_dir, dataset_config="harmless-base", strict=True)


def test_conversational_format(hh_dir):
    data = _load(hh_dir, dataset_config="helpful-base", format="conversational", max_samples=200)
    assert len(data.dataset) == 200
    standard = _load(hh_dir, dataset_config="helpful-base", max_samples=200).dataset
    for conv, std in zip(data.dataset, standard):
        roles = [m["role"] for m in conv["prompt"]]
        assert roles[0] == "user" and roles[-1] == "user"
        assert roles.count("user") == std["prompt"].count("\n\nHuman:")
        assert conv["chosen"] == [{"role": "assistant", "content": std["chosen"].strip()}]
        assert conv["rejected"] == [{"role": "assistant", "content": std["rejected"].strip()}]
        assert conv["prompt"][0]["content"] in std["prompt"]


def test_malformed_lines_are_errors_with_file_and_line_or_counted_skips(tmp_path):
    good = json.dumps({"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant: c"})
    path = tmp_path / "bad.jsonl"
    path.write_text(good + "\n{not json\n" + json.dumps({"chosen": 1, "rejected": "x"}) + "\n"
                    + json.dumps({"chosen": "x"}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"{path}, line 2, column \d+: invalid JSON"):
        load_preference_dataset("Anthropic/hh-rlhf", data_files=str(path))
    data = load_preference_data("Anthropic/hh-rlhf", data_files=str(path), on_malformed="skip")
    assert {key: data.report[key] for key in ("read", "kept", "dropped")} == {"read": 4, "kept": 1,
                                                                             "dropped": {"malformed": 3}}
    assert data.report["adapter"]["name"] == "hh-rlhf"
    assert data.report["adapter"]["distribution"] == "aligntune-data-hh-rlhf"
    path.write_text(good + "\n" + json.dumps({"chosen": 1, "rejected": "x"}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"{path}, line 2: key 'chosen' must be a string, got int"):
        load_preference_dataset("Anthropic/hh-rlhf", data_files=str(path))
    path.write_text(json.dumps({"chosen": "x", "answer": "y"}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"line 1: missing key\(s\) rejected; found: answer, chosen"):
        load_preference_dataset("Anthropic/hh-rlhf", data_files=str(path))


def test_bad_options_list_the_valid_values(hh_dir):
    with pytest.raises(DataError, match="unknown hh-rlhf subset 'helpful'; the subsets are: harmless-base"):
        _load(hh_dir, dataset_config="helpful")
    with pytest.raises(DataError, match=r"format='chat' is not valid; use one of: standard, conversational"):
        _load(hh_dir, format="chat")
    with pytest.raises(DataError, match="has no option 'subset'; its options: data_dir, format, on_malformed"):
        _load(hh_dir, subset="helpful-base")


def test_without_the_plugin_the_error_says_what_to_install(monkeypatch):
    from aligntune import plugins
    from aligntune.errors import UnknownPluginError

    monkeypatch.setenv("ALIGNTUNE_DISABLE_PLUGINS", "aligntune-data-hh-rlhf")
    plugins.reset_registry()
    try:
        with pytest.raises(UnknownPluginError, match="pip install ./plugins/aligntune-data-hh-rlhf"):
            load_preference_dataset("Anthropic/hh-rlhf", data_files="x.jsonl")
    finally:
        monkeypatch.delenv("ALIGNTUNE_DISABLE_PLUGINS")
        plugins.reset_registry()


def test_listed_by_aligntune_plugins_list():
    from aligntune import plugins

    plugins.reset_registry()
    listed = {p.name: p for p in plugins.list_plugins()}
    assert listed["aligntune-data-hh-rlhf"].provides["dataset_adapters"] == ["hh-rlhf"]
    assert listed["aligntune-data-hh-rlhf"].status == "ok"


def test_shared_data_files_rules_with_the_hub_layout(hh_dir):
    """The core's resolver (aligntune.data.files) with this adapter's directory layout: a glob over the subset
    folders, a sliced split, and a subset with named files (an error: the subset picks folders, not files)."""
    from aligntune_data_hh_rlhf.convert import convert_pair

    raw = _raw(hh_dir, "helpful-base")
    globbed = load_preference_data("Anthropic/hh-rlhf", data_files=str(hh_dir / "helpful-*" / "test.jsonl.gz"),
                                   split="test")
    assert globbed.report["read"] == sum(len(_raw(hh_dir, s)) for s in SUBSETS if s.startswith("helpful-"))
    sliced = load_preference_data("Anthropic/hh-rlhf", data_files=str(hh_dir), split="test[:10]",
                                  dataset_config="helpful-base")
    expected = [row for pair in raw[:10] if (row := convert_pair(pair["chosen"], pair["rejected"])[0]) is not None]
    assert sliced.report["read"] == 10 and sliced.dataset.to_list() == expected
    with pytest.raises(DataError, match=r"a subset \(helpful-base\) was chosen but data_files names the file"):
        load_preference_data("Anthropic/hh-rlhf", data_files=str(hh_dir / "*" / "test.jsonl.gz"), split="test",
                             dataset_config="helpful-base")
