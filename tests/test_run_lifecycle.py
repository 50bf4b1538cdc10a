"""Runs you can trust, on a real tiny Llama through the real CLI: resume after kill -9 (bit-exact), half-written
checkpoints skipped, resume refused on changed settings, output directories never clobbered or shared, the non-finite
guard (huge learning rate, a loss plugin that turns NaN/inf at step k), SIGTERM saves a checkpoint."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from aligntune.core.backend_factory import create_rl_trainer
from aligntune.errors import OutputDirError, ResumeError
from aligntune.runs import LOCK_FILE, MARKER
from safetensors.torch import load_file

from conftest import write_fake_distribution

FAST = dict(batch_size=8, learning_rate=1e-3, precision="fp32", seed=5, logging_steps=1)


def _yaml(path: Path, **options) -> Path:
    path.write_text("".join(f"{key}: {json.dumps(value)}\n" for key, value in options.items()), encoding="utf-8")
    return path


def _cli(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aligntune", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})


def _start(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "aligntune", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})


def _wait_for(predicate, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None:
            raise AssertionError(f"the run ended first (exit {process.returncode}): {process.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("timed out waiting for the run")
        time.sleep(0.005)


def _step_losses(run_dir: Path) -> list[tuple[int, float]]:
    last = max((p for p in run_dir.glob("checkpoint-*")), key=lambda p: int(p.name.split("-")[1]))
    history = json.loads((last / "trainer_state.json").read_text())["log_history"]
    return [(entry["step"], entry["loss"]) for entry in history if "loss" in entry]


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "model.safetensors")


def _complete(run_dir: Path, step: int) -> bool:
    return (run_dir / f"checkpoint-{step}" / MARKER).is_file()


KILL_OPTIONS = dict(max_steps=24, save_steps=1, training_args={"save_total_limit": 4}, **FAST)


@pytest.fixture(scope="module")
def uninterrupted_run(tiny_model, pairs_jsonl, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("straight") / "run"
    config = _yaml(out.parent / "run.yaml", model_name=str(tiny_model), dataset_name=str(pairs_jsonl),
                   output_dir=str(out), **KILL_OPTIONS)
    proc = _cli("train", str(config))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _weights_written_marker_not(run_dir: Path, step: int) -> bool:
    folder = run_dir / f"checkpoint-{step}"
    return (folder / "model.safetensors").is_file() and not (folder / MARKER).exists()


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["between_steps", "during_checkpoint_write"])
def test_kill_9_then_resume_matches_the_uninterrupted_run(moment, uninterrupted_run, tiny_model, pairs_jsonl,
                                                          tmp_path):
    killed = tmp_path / "killed"
    config = _yaml(tmp_path / "run.yaml", model_name=str(tiny_model), dataset_name=str(pairs_jsonl),
                   output_dir=str(killed), **KILL_OPTIONS)
    kill_at = random.Random().randint(3, 12)
    process = _start("train", str(config))
    if moment == "between_steps":
        _wait_for(lambda: _complete(killed, kill_at), process)
    else:  # the weights of checkpoint-k are on disk, its optimizer/RNG/trainer state and marker are not yet
        _wait_for(lambda: _weights_written_marker_not(killed, kill_at), process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "model.safetensors").exists()  # no final model yet
    record = json.loads((killed / "aligntune_run.json").read_text())
    assert record["run"]["stop_reason"] == "running"  # what a crash leaves: the record says it never finished
    torn = [path.name for path in killed.glob("checkpoint-*") if not (path / MARKER).exists()]
    if moment == "during_checkpoint_write":
        assert torn == [f"checkpoint-{kill_at}"]
    last_complete = max(int(path.name.split("-")[1]) for path in killed.glob("checkpoint-*") if path.name not in torn)

    # A fresh start in that directory is refused; --resume continues from the newest complete checkpoint.
    refused = _cli("train", str(config))
    assert refused.returncode == 2 and "already holds another training run" in refused.stderr
    resumed = _cli("train", str(config), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # Incomplete folders newer than the checkpoint used are named in a warning. (A kill during the rotation can also
    # leave an older, half-deleted folder: never used, and rotated away later.)
    newer = [name for name in torn if int(name.split("-")[1]) > last_complete]
    if moment == "during_checkpoint_write":
        assert newer == torn
    for name in newer:
        assert "skipping an incomplete checkpoint" in resumed.stderr and name in resumed.stderr

    assert _step_losses(killed) == _step_losses(uninterrupted_run)  # every step's loss, bit for bit
    assert len(_step_losses(killed)) == 24
    ours, reference = _weights(killed), _weights(uninterrupted_run)
    assert ours.keys() == reference.keys()
    assert all(torch.equal(ours[name], reference[name]) for name in reference)
    record = json.loads((killed / "aligntune_run.json").read_text())
    assert record["run"]["stop_reason"] == "finished"
    assert record["run"]["resumed_from"]["step"] == last_complete
    assert record["run"]["steps_run"] == 24 - last_complete
    # Whole-run figures cover the steps before the kill too: the same as the run that was never interrupted.
    straight_record = json.loads((uninterrupted_run / "aligntune_run.json").read_text())
    assert record["train_metrics"]["whole_run"] == pytest.approx(straight_record["train_metrics"]["whole_run"])
    # The torn checkpoint was replaced when the resumed run reached its step; rotation kept complete ones only.
    assert all((path / MARKER).is_file() for path in killed.glob("checkpoint-*"))


def _crashed_run(tiny_model, pairs_jsonl, output_dir: Path, **changes):
    """A run that saved checkpoints 2 and 4 of 6 and then died (its last checkpoint and final model never came)."""
    trainer = create_rl_trainer(model_name=str(tiny_model), dataset_name=str(pairs_jsonl), output_dir=str(output_dir),
                                max_steps=6, save_steps=2, **{**FAST, **changes})
    trainer.train()
    shutil.rmtree(output_dir / "checkpoint-6")
    (output_dir / "model.safetensors").unlink()
    return trainer


def test_resume_with_changed_settings_is_refused_naming_them_and_can_be_forced(tiny_model, pairs_jsonl, tmp_path):
    out = tmp_path / "run"
    _crashed_run(tiny_model, pairs_jsonl, out)
    common = dict(model_name=str(tiny_model), dataset_name=str(pairs_jsonl), output_dir=str(out), max_steps=6,
                  save_steps=2, **FAST)
    with pytest.raises(ResumeError, match=r"checkpoint-4 belongs to a run with different settings: beta: 0.1 -> 0.2; "
                                          r"learning_rate: 0.001 -> 0.0005"):
        create_rl_trainer(**{**common, "beta": 0.2, "learning_rate": 5e-4}).train(resume_from_checkpoint=True)
    # Settings that do not change the result (logging, checkpoint cadence) resume freely.
    trainer = create_rl_trainer(**{**common, "beta": 0.2, "logging_steps": 3, "resume_from_checkpoint": True,
                                   "force_resume": True})
    trainer.train()
    record = json.loads((out / "aligntune_run.json").read_text())
    assert record["run"]["resumed_from"]["step"] == 4 and record["beta"] == 0.2 and trainer.state.global_step == 6
    # Resuming the finished run: nothing left to train is said, not a silent extra step.
    # Checkpoints written after a forced resume carry the new settings.
    with pytest.raises(ResumeError, match="is the last step of a finished run"):
        create_rl_trainer(**{**common, "beta": 0.2}, resume_from_checkpoint=True).train()


def test_resume_requires_a_complete_checkpoint(tiny_model, pairs_jsonl, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with pytest.raises(ResumeError, match="nothing to resume in .*: it has no complete checkpoint"):
        create_rl_trainer(model_name=str(tiny_model), dataset_name=str(pairs_jsonl), output_dir=str(out),
                          resume_from_checkpoint=True, **FAST)
    with pytest.raises(ResumeError, match="nothing to resume in .*: it has no complete checkpoint"):
        create_rl_trainer(model_name=str(tiny_model), dataset_name=str(pairs_jsonl), output_dir=str(out),
                          **FAST).train(resume_from_checkpoint=True)
    (out / "checkpoint-3").mkdir()
    with pytest.raises(ResumeError, match="is not a complete aligntune checkpoint"):
        create_rl_trainer(model_name=str(tiny_model), dataset_name=str(pairs_jsonl), output_dir=str(out),
                          max_steps=4, **FAST).train(resume_from_checkpoint=str(out / "checkpoint-3"))


def test_output_dir_is_never_clobbered_and_overwrite_leaves_nothing_stale(tiny_model, pairs_jsonl, tmp_path):
    out = tmp_path / "run"
    common = dict(model_name=str(tiny_model), dataset_name=str(pairs_jsonl), output_dir=str(out), **FAST)
    create_rl_trainer(**common, max_steps=3, save_steps=1).train()
    assert {p.name for p in out.glob("checkpoint-*")} == {"checkpoint-1", "checkpoint-2", "checkpoint-3"}
    # A run with complete checkpoints: the trainer can be built (train(resume_from_checkpoint=True) may continue
    # it), but training it afresh is refused.
    with pytest.raises(OutputDirError, match=r"already holds another training run .*--resume.*--overwrite-output-dir"):
        create_rl_trainer(**{**common, "max_steps": 2, "seed": 9}).train()
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    trainer = create_rl_trainer(**{**common, "max_steps": 2, "save_steps": None, "seed": 9},
                                overwrite_output_dir=True)
    trainer.train()
    assert not list(out.glob("checkpoint-*"))  # the old run's checkpoints are gone, so none can be resumed by mistake
    assert (out / "notes.txt").read_text() == "mine"  # what aligntune did not write is kept
    record = json.loads((out / "aligntune_run.json").read_text())
    assert record["config"]["seed"] == 9 and record["global_step"] == 2
    # A finished run with nothing to resume: refused when the trainer is created, before any model is loaded.
    with pytest.raises(OutputDirError, match=r"already holds another training run; training into it would mix"):
        create_rl_trainer(**{**common, "max_steps": 2, "save_steps": None, "model_name": str(tmp_path / "absent")})
    # Unrelated files only: refused at creation too, and the message says what is there.
    other = tmp_path / "other"
    other.mkdir()
    (other / "data.csv").write_text("a,b\n", encoding="utf-8")
    with pytest.raises(OutputDirError, match=r"already holds other files \(data.csv\)"):
        create_rl_trainer(**{**common, "output_dir": str(other), "model_name": str(tmp_path / "absent")}, max_steps=1)
    assert {p.name for p in other.iterdir()} <= {"data.csv", LOCK_FILE}  # nothing of the run was written


def test_a_second_run_on_a_busy_output_dir_fails_at_once(tiny_model, pairs_jsonl, tmp_path):
    out = tmp_path / "busy"
    config = _yaml(tmp_path / "run.yaml", model_name=str(tiny_model), dataset_name=str(pairs_jsonl),
                   output_dir=str(out), max_steps=100000, save_steps=None, **FAST)
    first = _start("train", str(config))
    try:
        _wait_for(lambda: (out / LOCK_FILE).is_file() and str(first.pid) in (out / LOCK_FILE).read_text(), first)
        started = time.monotonic()
        second = _cli("train", str(config), "--overwrite-output-dir")
        assert second.returncode == 2
        assert f"is in use by another aligntune run (pid {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr and time.monotonic() - started < 60
        assert first.poll() is None  # the first run is untouched and still training
    finally:
        first.kill()
        first.wait()


NAN_LOSS_PLUGIN = """
import os
from aligntune.plugins import LossSpec, hookimpl

CALLS = [0]

def _turns_bad(inputs):
    import torch.nn.functional as F
    CALLS[0] += 1
    losses = -F.logsigmoid(inputs.beta * inputs.logits)
    if CALLS[0] in {int(k) for k in os.environ["BAD_AT_CALLS"].split(",")}:
        return losses + float(os.environ.get("BAD_VALUE", "nan"))
    return losses

@hookimpl
def aligntune_losses():
    yield LossSpec(name="turns-bad", summary="sigmoid DPO that turns non-finite at chosen calls", fn=_turns_bad)
"""


@pytest.fixture
def bad_loss_site(tmp_path) -> Path:
    site = tmp_path / "site"
    write_fake_distribution(site, "aligntune-loss-turns-bad", "0.1", {"turns-bad": "turns_bad_loss"},
                            {"turns_bad_loss": NAN_LOSS_PLUGIN})
    return site


def _env(site: Path, **extra: str) -> dict:
    return {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]), **extra}


@pytest.mark.parametrize("cause", ["learning_rate", "loss_plugin", "loss_plugin_inf"])
def test_non_finite_training_stops_keeps_the_last_good_checkpoint_and_exits_non_zero(
        cause, tiny_model, pairs_jsonl, bad_loss_site, tmp_path):
    out = tmp_path / "run"
    options = dict(model_name=str(tiny_model), dataset_name=str(pairs_jsonl), output_dir=str(out), max_steps=8,
                   save_steps=1, **FAST)
    if cause == "learning_rate":
        options["learning_rate"] = 1e8
    else:
        options["loss_type"] = "turns-bad"
    bad_value = "inf" if cause == "loss_plugin_inf" else "nan"
    proc = _cli("train", str(_yaml(tmp_path / "run.yaml", **options)),
                env=_env(bad_loss_site, BAD_AT_CALLS="4", BAD_VALUE=bad_value))
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    message = proc.stderr[proc.stderr.index("aligntune: error:"):]
    assert "training stopped at step" in message and "Last good checkpoint" in message
    stopped_at = int(message.split("training stopped at step ")[1].split(":")[0])
    if cause != "learning_rate":
        assert stopped_at == 4 and f"the loss was {bad_value}" in message
        assert "Last finite step 3: loss" in message
    assert not (out / "model.safetensors").exists()  # no final model written over anything
    record = json.loads((out / "aligntune_run.json").read_text())
    assert record["run"]["stop_reason"] == "non-finite" and record["run"]["model_saved"] is False
    good = out / f"checkpoint-{stopped_at - 1}"
    assert (good / MARKER).is_file()
    assert all(torch.isfinite(tensor).all() for tensor in load_file(good / "model.safetensors").values())
    assert not (out / f"checkpoint-{stopped_at}").exists()


@pytest.mark.parametrize("bad_value", ["nan", "inf"])
def test_skip_policy_drops_non_finite_steps_counts_them_and_logs_no_fake_loss(
        bad_value, tiny_model, pairs_jsonl, bad_loss_site, tmp_path, monkeypatch):
    from aligntune.plugins import reset_registry

    monkeypatch.syspath_prepend(str(bad_loss_site))
    monkeypatch.setenv("BAD_AT_CALLS", "2,5")
    monkeypatch.setenv("BAD_VALUE", bad_value)
    sys.modules.pop("turns_bad_loss", None)
    reset_registry()
    try:
        trainer = create_rl_trainer(model_name=str(tiny_model), dataset_name=str(pairs_jsonl),
                                    output_dir=str(tmp_path / "run"), max_steps=6, save_steps=None,
                                    loss_type="turns-bad", on_nonfinite="skip", **{**FAST, "logging_steps": 3})
        result = trainer.train()
    finally:
        sys.modules.pop("turns_bad_loss", None)
        reset_registry()
    record = json.loads((tmp_path / "run" / "aligntune_run.json").read_text())
    assert record["run"]["nonfinite_steps_skipped"] == 2 and record["run"]["stop_reason"] == "finished"
    windows = [entry for entry in trainer.log_history if "loss" in entry]
    assert [entry.get("nonfinite_steps_skipped", 0) for entry in windows] == [1, 1]
    # Each window's loss is the mean over its trained steps: finite, and not Trainer's stand-in for the bad step.
    assert all(torch.isfinite(torch.tensor(entry["loss"])) for entry in windows)
    assert result.metrics["whole_run/nonfinite_steps_skipped"] == 2 and result.metrics["whole_run/steps"] == 6
    assert all(torch.isfinite(torch.tensor(value)) for key, value in result.metrics.items()
               if isinstance(value, float))
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_sigterm_saves_a_complete_checkpoint_and_resume_finishes(tiny_model, pairs_jsonl, tmp_path):
    out = tmp_path / "run"
    config = _yaml(tmp_path / "run.yaml", model_name=str(tiny_model), dataset_name=str(pairs_jsonl),
                   output_dir=str(out), max_steps=400, save_steps=None, **FAST)
    process = _start("train", str(config))
    _wait_for(lambda: (out / LOCK_FILE).is_file() and str(process.pid) in (out / LOCK_FILE).read_text(), process)
    time.sleep(2.0)  # some steps in
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    assert "training stopped by SIGTERM" in stderr and "--resume" in stderr
    checkpoints = list(out.glob("checkpoint-*"))
    assert len(checkpoints) == 1 and (checkpoints[0] / MARKER).is_file()  # saved although save_steps is null
    record = json.loads((out / "aligntune_run.json").read_text())
    assert record["run"]["stop_reason"] == "interrupted"
    step = int(checkpoints[0].name.split("-")[1])
    assert 0 < step < 400
    resumed = _cli("train", str(config), "--resume", str(checkpoints[0]))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    record = json.loads((out / "aligntune_run.json").read_text())
    assert record["run"]["stop_reason"] == "finished" and record["run"]["resumed_from"]["step"] == step
    assert record["global_step"] == 400


def _independent_counts(tokenizer, rows, max_seq_length: int) -> tuple[int, int]:
    """Pairs dropped (prompt fills max_seq_length) and pairs cut, counted with the slow tokenizer call per text."""
    dropped = cut = 0
    for row in rows:
        prompt = tokenizer(row["prompt"])["input_ids"]
        sides = [tokenizer(row["prompt"] + row[key] + tokenizer.eos_token)["input_ids"]
                 for key in ("chosen", "rejected")]
        start = min(next((i for i, (a, b) in enumerate(zip(prompt, side, strict=False)) if a != b),
                         min(len(prompt), len(side)))
                    for side in sides)
        if start >= max_seq_length:
            dropped += 1
        elif max(len(side) for side in sides) > max_seq_length:
            cut += 1
    return dropped, cut


@pytest.mark.parametrize("max_seq_length", [96, 256])
def test_every_real_hh_rlhf_pair_is_trained_or_counted(max_seq_length, shared_data, tiny_model, tmp_path):
    from transformers import AutoTokenizer

    trainer = create_rl_trainer(
        model_name=str(tiny_model), dataset_name="Anthropic/hh-rlhf", data_files=str(shared_data / "hh-rlhf"),
        split="test", dataset_config="helpful-online", output_dir=str(tmp_path / "run"), max_seq_length=max_seq_length,
        **FAST,
    )
    loaded = trainer.data_reports["train"]["kept"]
    report = trainer.tokenization_reports["train"]
    dropped = report["dropped"].get("prompt_fills_max_seq_length", 0)
    assert report["pairs_in"] == loaded and loaded == len(trainer.train_dataset) + dropped
    assert 0 < dropped < loaded  # these settings drop some of the real pairs, and keep some

    from aligntune.data import load_preference_dataset

    rows = load_preference_dataset("Anthropic/hh-rlhf", data_files=str(shared_data / "hh-rlhf"), split="test",
                                   dataset_config="helpful-online")
    assert (dropped, report["completion_truncated"]) == _independent_counts(
        AutoTokenizer.from_pretrained(tiny_model), rows, max_seq_length)


def test_no_pair_left_is_an_error_naming_the_setting(tiny_model, pairs_jsonl, tmp_path):
    config = _yaml(tmp_path / "run.yaml", model_name=str(tiny_model), dataset_name=str(pairs_jsonl),
                   output_dir=str(tmp_path / "run"), max_seq_length=4)
    proc = _cli("train", str(config))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "no train pair fits max_seq_length=4: every prompt alone fills it (longest prompt" in proc.stderr


def test_half_the_pairs_dropped_is_a_warning_in_the_log_and_the_record(tiny_model, tmp_path):
    rows = [{"prompt": "Q: what is 1 plus 1? A:" if i % 2 else "Q: " + "what is one plus one? " * 6 + "A:",
             "chosen": " 2", "rejected": " 3"} for i in range(32)]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    config = _yaml(tmp_path / "run.yaml", model_name=str(tiny_model), dataset_name=str(data), max_steps=1,
                   output_dir=str(tmp_path / "run"), max_seq_length=32, save_steps=None, **FAST)
    proc = _cli("--log-format", "json", "train", str(config))
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{") and '"event"' in line]
    warnings = [entry["event"] for entry in lines if entry["level"] == "warning"]
    assert any(event.startswith("16 of 32 train pairs (50.0%) dropped: the prompt alone fills max_seq_length=32")
               for event in warnings), warnings
    record = json.loads((tmp_path / "run" / "aligntune_run.json").read_text())
    assert record["data"]["train"]["tokenization"]["dropped"] == {"prompt_fills_max_seq_length": 16}
    assert record["data"]["train"]["adapter"]["kept"] == 32


def test_the_record_resolves_paths_and_names_versions(tiny_model, pairs_jsonl, tmp_path, monkeypatch):
    monkeypatch.chdir(tiny_model.parent)
    trainer = create_rl_trainer(model_name=tiny_model.name, dataset_name=str(pairs_jsonl), max_steps=1,
                                save_steps=None, **FAST)
    trainer.train()
    out = Path(trainer.args.output_dir)
    assert out.parent == Path("output") / f"{tiny_model.name}-dpo"  # a new directory of its own
    record = json.loads((out / "aligntune_run.json").read_text())
    assert record["model_name"] == record["reference_model"] == str(tiny_model.resolve())
    assert record["model_name_given"] == tiny_model.name
    assert record["run"]["output_dir"] == str(out.resolve())
    assert record["versions"]["plugins"]["aligntune-backend-trl"]
    assert record["run"]["stop_reason"] == "finished" and record["run"]["model_saved"] is True
    # Evaluation from another working directory finds the model the run started from (the reference).
    from aligntune.eval.core import EvalConfig, run_eval

    run_dir = out.resolve()
    monkeypatch.chdir(tmp_path)
    results = run_eval(EvalConfig(model_path=str(run_dir), output_dir=str(tmp_path / "eval"),
                                  dataset_name=str(pairs_jsonl), split="train", metrics=["reward_margin"]))
    plan = json.loads((tmp_path / "eval" / "results.json").read_text())["plan"]
    assert plan["reference_path"] == str(tiny_model.resolve()) and "reward_margin" in results


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("beta: .inf", "key 'beta': must be a number > 0, got inf"),
        ("training_args: {resume_from_checkpoint: x}", "set it with the aligntune option 'resume_from_checkpoint'"),
        ("overwrite_output_dir: true\nresume_from_checkpoint: true", "cannot be combined with resume_from_checkpoint"),
    ],
)
def test_bad_lifecycle_settings_are_clear_errors(setting, message, tiny_model, pairs_jsonl, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(f"model_name: {tiny_model}\ndataset_name: {pairs_jsonl}\noutput_dir: {tmp_path / 'o'}\n"
                      f"{setting}\n", encoding="utf-8")
    proc = _cli("train", str(config))
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
