"""The typed run record: built from a config, written and read back unchanged, its shipped schema in step with the
classes, older formats read, newer ones and broken ones refused with the key, the file and the writer named."""

from __future__ import annotations

import fnmatch
import json
import re
from importlib.metadata import version
from pathlib import Path

import attrs
import pytest

from aligntune.core.config import TrainConfig
from aligntune.errors import ConfigError, RunRecordError
from aligntune.runs.record import (
    FORMAT_VERSION,
    DataReports,
    DataSplit,
    Processes,
    ReferenceLogProbs,
    RunRecord,
    RunStatus,
    TokenizationCounts,
    TrainMetrics,
    Writer,
    load_run_record,
)
from aligntune.runs.record_schema import SCHEMA_FILE, load_schema, render_schema, validate

CORE = Path(__file__).resolve().parents[1]
TRL_VERSION = "9.9.0"  # set below: the test does not depend on which plugins are installed


def _record(**config) -> RunRecord:
    config = TrainConfig(**{"model_name": "org/tiny", "dataset_name": "pairs.jsonl", "beta": 0.3, "use_lora": False,
                             **config})
    record = RunRecord.create(
        config,
        global_step=4,
        run=RunStatus(stop_reason="finished", model_saved=True, output_dir="/runs/a", resumed_from=None, steps_run=4,
                      max_steps=4, nonfinite_steps_skipped=0, on_nonfinite="stop", fingerprint="abc"),
        reference_log_probs=ReferenceLogProbs(precomputed=True, cache_hits=0),
        processes=Processes(world_size=1, kind="single", distributed_type="NO"),
        data=DataReports(train=DataSplit(
            adapter={"read": 8, "kept": 8, "dropped": {}},
            tokenization=TokenizationCounts(pairs_in=8, pairs_kept=8, dropped={},
                                            more={"prompt_truncated": 0, "prompt_tokens": {"max": 9, "median": 7}}))),
        train_metrics=TrainMetrics(whole_run={"loss": 0.69, "steps": 4}, last_window={"loss": 0.68, "steps": 1},
                                   this_session={"train_runtime": 1.5}),
    )
    plugins = {**record.versions["plugins"], "aligntune-backend-trl": TRL_VERSION}
    return attrs.evolve(record, written_by=Writer("aligntune-backend-trl", TRL_VERSION, version("aligntune-core")),
                        versions={**record.versions, "plugins": plugins})


def _format_1(record: RunRecord) -> dict:
    """The same record as aligntune wrote it before the record was typed: format 1, no written_by."""
    data = record.to_json()
    data.pop("written_by")
    return {**data, "format": 1}


def test_the_shipped_schema_is_the_one_the_classes_generate():
    assert SCHEMA_FILE.read_text(encoding="utf-8") == render_schema(), (
        "run_record.schema.json is out of date: python -m aligntune.runs.record_schema")
    schema = load_schema()
    assert schema["properties"]["format"] == {"description": "the record's format", "type": "integer",
                                              "const": FORMAT_VERSION}
    assert "beta" in schema["required"] and "datasets" not in schema["required"]


def test_the_schema_file_is_package_data():
    import aligntune

    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")
    # Installed from a wheel (the nox sessions), the file is there only if the wheel carries it.
    assert SCHEMA_FILE.is_file(), f"{SCHEMA_FILE} is missing from the installed package"
    package_data = tomllib.loads((CORE / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    relative = SCHEMA_FILE.relative_to(Path(aligntune.__file__).parent).as_posix()
    assert any(fnmatch.fnmatch(relative, pattern) for pattern in package_data["aligntune"]), package_data


def test_a_record_round_trips_and_validates(tmp_path):
    record = _record()
    data = record.to_json()
    assert validate(data, load_schema()) == []
    assert list(data)[:5] == ["format", "created", "algorithm", "backend", "written_by"]
    assert data["written_by"]["distribution"] == "aligntune-backend-trl"
    assert "datasets" not in data and "config" not in data["processes"]  # absent keys stay absent
    assert data["data"]["train"]["tokenization"] == {"pairs_in": 8, "pairs_kept": 8, "dropped": {},
                                                      "prompt_truncated": 0, "prompt_tokens": {"max": 9, "median": 7}}
    record.write(tmp_path)
    again = load_run_record(tmp_path)
    assert again == record and again.to_json() == data and not again.missing
    assert again.source == str(tmp_path / "aligntune_run.json")
    assert again.run.model_saved is True and again.tokenization.max_seq_length == 512 and again.beta == 0.3


def test_a_format_1_record_reads_and_names_its_writer():
    old = _format_1(_record())
    record = RunRecord.from_json(old, source="old/aligntune_run.json")
    assert record.format_version == 1 and record.missing == {"written_by"} and record.beta == 0.3
    assert record.writer_label == f"backend 'trl' (aligntune-backend-trl {TRL_VERSION}), record format 1"
    # The first records had no format key and fewer parts: read, with what they lack named.
    first = RunRecord.from_json({"beta": 0.7, "model_name": "m", "backend": "trl"}, source="first.json")
    assert first.format_version == 1 and first.lacks("run.model_saved") and not first.lacks("beta")
    assert first.writer_label == "backend 'trl' (version not recorded), record format 1"
    with pytest.raises(RunRecordError) as raised:
        first.require("beta", "tokenization.max_seq_length", purpose="evaluation", hint="Give max_seq_length.")
    assert str(raised.value) == (
        "first.json: key 'tokenization.max_seq_length' is missing from the run record (backend 'trl' (version not "
        "recorded), record format 1); evaluation needs it. Give max_seq_length.")


def test_a_current_record_with_a_key_left_out_is_refused_naming_it():
    data = _record().to_json()
    del data["beta"], data["run"]["model_saved"]
    expected = ("run/aligntune_run.json: not a valid run record of format 2 (written by backend 'trl' "
                f"(aligntune-backend-trl {TRL_VERSION}), record format 2): key 'beta' is missing; "
                "key 'run.model_saved' is missing")
    with pytest.raises(RunRecordError, match=re.escape(expected)):
        RunRecord.from_json(data, source="run/aligntune_run.json")


def test_a_value_of_the_wrong_type_is_refused_in_any_format():
    data = _format_1(_record())
    data["beta"] = "0.1"
    data["data"]["train"]["tokenization"]["pairs_kept"] = None
    with pytest.raises(RunRecordError) as raised:
        RunRecord.from_json(data, source="r.json")
    message = str(raised.value)
    assert "key 'beta' must be number, got \"0.1\"" in message
    assert "key 'data.train.tokenization.pairs_kept' must be integer, got null" in message


@pytest.mark.parametrize("found, message", [
    (FORMAT_VERSION + 1, f"this aligntune-core ({version('aligntune-core')}) reads run record formats 1 to 2. "
                         "Upgrade aligntune-core"),
    ("2", "key 'format' must be a run record format number (1 to 2), got '2'"),
    (True, "key 'format' must be a run record format number"),
    (0, "key 'format' must be a run record format number"),
])
def test_a_newer_or_unknown_format_is_a_clear_error(found, message):
    data = {**_record().to_json(), "format": found}
    with pytest.raises(RunRecordError, match=re.escape(message)) as raised:
        RunRecord.from_json(data, source="r.json")
    assert str(raised.value).startswith("r.json: ")
    assert isinstance(raised.value, ConfigError)  # the CLI shows it as a user error (exit 2)


def test_a_record_that_is_not_an_object_is_refused(tmp_path):
    (tmp_path / "aligntune_run.json").write_text(json.dumps([1, 2]), encoding="utf-8")
    with pytest.raises(ConfigError, match="not a run record"):
        load_run_record(tmp_path)
    assert load_run_record(tmp_path / "nothing-here") is None


def test_the_validator_covers_what_the_schema_uses():
    schema = {"type": "object", "required": ["a"], "additionalProperties": False,
              "properties": {"a": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/P"}]},
                             "b": {"type": "array", "items": {"type": "integer"}}},
              "$defs": {"P": {"type": "object", "required": ["x"], "properties": {"x": {"type": "number"}},
                              "additionalProperties": {"type": "string"}}}}
    assert validate({"a": None, "b": [1, 2]}, schema) == []
    assert validate({"a": {"x": 1.5, "y": "s"}}, schema) == []
    problems = [(p.path, p.message) for p in validate({"a": {"y": 3}, "b": [1, True], "c": 1}, schema)]
    assert problems == [("a.x", "is missing"), ("a.y", "must be string, got 3"), ("b[1]", "must be integer, got true"),
                        ("c", "is not a key of this part of the record")]
    assert [p.message for p in validate({"a": 5}, schema)] == ["5 matches none of the allowed shapes"]
