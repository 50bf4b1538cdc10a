"""The run record of a real tiny run: every version of it written validates against the shipped schema, and
evaluation and export read it typed. An older record (format 1, as aligntune wrote it before the record was typed)
still evaluates and exports; a record that lacks what they need is an error naming the key, the file and the backend
that wrote it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from aligntune.core.backend_factory import create_rl_trainer
from aligntune.errors import RunRecordError
from aligntune.runs.record import FORMAT_VERSION, RunRecord
from aligntune.runs.record_schema import load_schema, validate

RECORD = "aligntune_run.json"


@pytest.fixture(scope="module")
def recorded_run(tiny_model, pairs_jsonl, tmp_path_factory) -> tuple[Path, list[dict]]:
    """A two-step run with a checkpoint per step and an eval split; every record it wrote, in order."""
    import aligntune.core.run_record as run_record

    written: list[dict] = []
    original = run_record.write_run_record

    def keep(directory, record):
        written.append(json.loads(json.dumps(record, default=str)))
        return original(directory, record)

    out = tmp_path_factory.mktemp("recorded") / "run"
    run_record.write_run_record = keep
    try:
        create_rl_trainer(model_name=str(tiny_model), dataset_name=str(pairs_jsonl), output_dir=str(out), max_steps=2,
                          save_steps=1, batch_size=8, precision="fp32", logging_steps=1,
                          eval_dataset_name=str(pairs_jsonl), eval_split="train").train()
    finally:
        run_record.write_run_record = original
    return out, written


def _eval(model_path: Path, pairs_jsonl: Path, out: Path, **options):
    from aligntune.eval.core import EvalConfig, run_eval

    return run_eval(EvalConfig(model_path=str(model_path), output_dir=str(out), dataset_name=str(pairs_jsonl),
                               split="train", max_samples=8, metrics=["reward_margin"], device="cpu", **options))


def _copy_with_record(run: Path, target: Path, edit) -> Path:
    """The run's model and tokenizer with an edited record (checkpoints left out)."""
    shutil.copytree(run, target, ignore=shutil.ignore_patterns("checkpoint-*", "eval*"))
    data = json.loads((target / RECORD).read_text())
    edit(data)
    (target / RECORD).write_text(json.dumps(data, indent=2), encoding="utf-8")
    return target


def _as_format_1(data: dict) -> None:
    """What aligntune wrote before the record was typed: the same keys, format 1, no written_by."""
    data["format"] = 1
    del data["written_by"]


def test_every_record_a_run_writes_validates_against_the_schema(recorded_run):
    out, written = recorded_run
    schema = load_schema()
    reasons = [record["run"]["stop_reason"] for record in written]
    assert reasons[0] == "running" and reasons[-1] == "finished" and len(written) >= 4  # start, 2 checkpoints, end
    for record in [*written, json.loads((out / RECORD).read_text()),
                   *(json.loads(path.read_text()) for path in out.glob(f"checkpoint-*/{RECORD}"))]:
        assert validate(record, schema) == [], record["run"]
        assert record["format"] == FORMAT_VERSION
    final = RunRecord.from_json(json.loads((out / RECORD).read_text()), source=str(out / RECORD))
    assert not final.missing and final.run.model_saved and final.global_step == 2
    assert final.data.eval is not None and final.data.train.tokenization.pairs_in == 64
    assert final.written_by.distribution == "aligntune-backend-trl"


def test_an_older_record_still_evaluates_and_exports(recorded_run, pairs_jsonl, tmp_path):
    from aligntune.export import export_model

    out, _ = recorded_run
    current = _eval(out, pairs_jsonl, tmp_path / "eval-current")
    old = _copy_with_record(out, tmp_path / "old", _as_format_1)
    assert _eval(old, pairs_jsonl, tmp_path / "eval-old") == pytest.approx(current)
    plan = json.loads((tmp_path / "eval-old" / "results.json").read_text())["plan"]
    assert plan["beta_source"] == f"{old}/{RECORD}" and plan["beta"] == 0.1

    exported = export_model(old, tmp_path / "export")
    card = (exported / "README.md").read_text()
    assert "| β | 0.1 |" in card and "`sigmoid`" in card and "| steps | 2 |" in card
    assert "Training metrics, averaged over the run" in card


def test_a_record_without_beta_is_an_error_naming_key_file_and_backend(recorded_run, pairs_jsonl, tmp_path):
    from importlib.metadata import version

    from aligntune.export import export_model

    out, _ = recorded_run
    broken = _copy_with_record(out, tmp_path / "broken", lambda data: data.pop("beta"))
    writer = f"backend 'trl' (aligntune-backend-trl {version('aligntune-backend-trl')}), record format 2"
    with pytest.raises(RunRecordError, match="key 'beta' is missing") as raised:
        _eval(broken, pairs_jsonl, tmp_path / "eval")
    assert str(raised.value).startswith(f"{broken / RECORD}: not a valid run record of format 2 (written by {writer})")
    with pytest.raises(RunRecordError, match="key 'beta' is missing"):
        export_model(broken, tmp_path / "export")
    # An older record without beta: evaluation says what it needs, unless beta is given.
    old = _copy_with_record(out, tmp_path / "old", lambda data: (_as_format_1(data), data.pop("beta")))
    with pytest.raises(RunRecordError) as raised:
        _eval(old, pairs_jsonl, tmp_path / "eval-old")
    assert str(raised.value) == (
        f"{old / RECORD}: key 'beta' is missing from the run record (backend 'trl' (aligntune-backend-trl "
        f"{version('aligntune-backend-trl')}), record format 1); evaluation (to score the pairs as they were trained) "
        "needs it. Give beta (the value the model was trained with).")
    assert "reward_margin" in _eval(old, pairs_jsonl, tmp_path / "eval-given", beta=0.1)


def test_an_older_record_without_its_tokenization_limits_is_refused(recorded_run, pairs_jsonl, tmp_path):
    out, _ = recorded_run
    old = _copy_with_record(out, tmp_path / "old", lambda data: (_as_format_1(data), data.pop("tokenization")))
    with pytest.raises(RunRecordError, match=r"key 'tokenization.max_seq_length' is missing .* Give max_seq_length"):
        _eval(old, pairs_jsonl, tmp_path / "eval")


def test_a_newer_record_format_is_refused(recorded_run, pairs_jsonl, tmp_path):
    out, _ = recorded_run
    newer = _copy_with_record(out, tmp_path / "newer", lambda data: data.update(format=FORMAT_VERSION + 1))
    with pytest.raises(RunRecordError, match="Upgrade aligntune-core"):
        _eval(newer, pairs_jsonl, tmp_path / "eval")
