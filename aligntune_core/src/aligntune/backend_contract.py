"""The backend contract kit behind `aligntune.testing.check_backend_contract`: the run lifecycle guarantees every
backend must give, each a named check run on a tiny model through the public API and the `aligntune` CLI.

Checks share a few runs (made once, on first use): a short in-process run, and, through the CLI, a run killed with
SIGKILL and resumed next to the same run uninterrupted, a run whose loss turns NaN, and a long run stopped with
SIGTERM while a second run tries its output directory. The loss those CLI runs train with is a sigmoid DPO loss from
a plugin the kit installs in `workdir` (a fake distribution on PYTHONPATH), so that it can pause each step (to kill
a run at a known point without racing it) or return NaN at a chosen step.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

STEPS = 8  # the kill -9 runs: a checkpoint after every step
KILL_AFTER = 2  # SIGKILL once this checkpoint is complete
NAN_AT = 3  # the non-finite run's loss is NaN at this step
BASE_OPTIONS: dict[str, Any] = dict(batch_size=8, learning_rate=1e-3, precision="fp32", seed=5, logging_steps=1,
                                    save_steps=None)

LOSS = "contract-sigmoid"
LOSS_MODULE = "aligntune_contract_kit_loss"
LOSS_PLUGIN = '''
"""The contract kit's loss: sigmoid DPO that can pause each call or turn NaN at a chosen call (environment)."""
import os
import time

from aligntune.plugins import LossSpec, hookimpl

CALLS = [0]


def _loss(inputs):
    import torch.nn.functional as F

    CALLS[0] += 1
    time.sleep(float(os.environ.get("ALIGNTUNE_CONTRACT_PAUSE", "0")))
    losses = -F.logsigmoid(inputs.beta * inputs.logits)
    if CALLS[0] == int(os.environ.get("ALIGNTUNE_CONTRACT_NAN_AT", "0")):
        return losses * float("nan")
    return losses


@hookimpl
def aligntune_losses():
    yield LossSpec(name="contract-sigmoid", summary="sigmoid DPO for the backend contract kit", fn=_loss)
'''


class ContractFailure(AssertionError):
    """One check's failure; the message says what the backend did and what the contract asks for."""


@attrs.frozen
class CheckResult:
    """A check that ran: its name, whether it passed, its message when it did not, and the seconds it took (the
    first check to use a shared run pays for that run)."""

    name: str
    passed: bool
    seconds: float
    message: str = ""


@attrs.define
class Kit:
    backend: str
    model_dir: Path
    data_file: Path
    workdir: Path
    options: dict[str, Any]
    _shared: dict[str, Any] = attrs.field(factory=dict)

    # -- running things --------------------------------------------------------------------------------------------

    def settings(self, **changes: Any) -> dict[str, Any]:
        return {"model_name": str(self.model_dir), "dataset_name": str(self.data_file), "backend": self.backend,
                **BASE_OPTIONS, **self.options, **changes}

    def config_file(self, name: str, **changes: Any) -> Path:
        path = self.workdir / f"{name}.yaml"
        path.write_text("".join(f"{key}: {json.dumps(value)}\n" for key, value in self.settings(**changes).items()),
                        encoding="utf-8")
        return path

    def env(self, **extra: str) -> dict[str, str]:
        site = self.shared("plugin site", self._plugin_site)
        path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
        return {**os.environ, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1", **extra}

    def cli(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "aligntune", *args], capture_output=True, text=True,
                              timeout=600, env=self.env(**env))

    def start(self, log: Path, *args: str, **env: str) -> subprocess.Popen:
        """A CLI run in the background, its stderr (JSON lines) into `log` (a pipe could fill up and stall it)."""
        with log.open("w", encoding="utf-8") as stderr:
            return subprocess.Popen([sys.executable, "-m", "aligntune", "--log-format", "json", *args],
                                    stdout=subprocess.DEVNULL, stderr=stderr, text=True, env=self.env(**env))

    def shared(self, name: str, make: Callable[[], Any]) -> Any:
        """A run several checks read, made once; if making it failed, every check that needs it fails the same way."""
        if name not in self._shared:
            try:
                self._shared[name] = make()
            except ContractFailure as failure:
                self._shared[name] = failure
        value = self._shared[name]
        if isinstance(value, ContractFailure):
            raise ContractFailure(f"({name}) {value}")
        return value

    def _plugin_site(self) -> Path:
        from aligntune.testing import write_fake_distribution

        site = self.workdir / "plugin-site"
        if not site.is_dir():
            write_fake_distribution(site, "aligntune-contract-kit-loss", "0.1", {LOSS: LOSS_MODULE},
                                    {LOSS_MODULE: LOSS_PLUGIN})
        return site

    def distribution(self) -> str:
        from aligntune.plugins import registry

        provided = registry().lookup("backends", self.backend)
        return provided.plugin.name if provided is not None else "(unregistered)"


# -- helpers ---------------------------------------------------------------------------------------------------------


def _expect(condition: object, message: str) -> None:
    if not condition:
        raise ContractFailure(message)


def _tail(text: str, size: int = 2500) -> str:
    return text[-size:].strip() or "(nothing)"


def _succeeded(proc: subprocess.CompletedProcess, what: str) -> None:
    _expect(proc.returncode == 0, f"{what} exited {proc.returncode}; stderr ends:\n{_tail(proc.stderr)}")


def _events(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def _step_losses(log_text: str) -> dict[int, float]:
    """Each logged step's loss from the JSON-lines `metrics` events (the run's closing summary left out)."""
    return {int(event["step"]): event["loss"] for event in _events(log_text)
            if event.get("event") == "metrics" and "loss" in event and "train_runtime" not in event}


def _weights(directory: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    files = sorted(directory.glob("*.safetensors"))
    _expect(files, f"{directory} holds no *.safetensors weights")
    out: dict[str, Any] = {}
    for file in files:
        out.update({f"{file.name}:{key}": value for key, value in load_file(file).items()})
    return out


def _record(directory: Path) -> dict[str, Any]:
    path = directory / "aligntune_run.json"
    _expect(path.is_file(), f"no aligntune_run.json in {directory}")
    return json.loads(path.read_text(encoding="utf-8"))


def _checkpoints(directory: Path):
    from aligntune.runs import list_checkpoints

    return list_checkpoints(directory)


def _wait(predicate: Callable[[], bool], process: subprocess.Popen, log: Path, what: str,
          timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None:
            raise ContractFailure(f"the run ended (exit {process.returncode}) before {what}; stderr ends:\n"
                                  f"{_tail(log.read_text(encoding='utf-8'))}")
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise ContractFailure(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.01)


# -- shared runs -----------------------------------------------------------------------------------------------------


def _basic_run(kit: Kit) -> dict[str, Any]:
    """Three steps in-process through `create_rl_trainer`, with an evaluation split; then `save_model` elsewhere."""
    from aligntune.core.backend_factory import create_rl_trainer

    out = kit.workdir / "basic"
    try:
        trainer = create_rl_trainer(**kit.settings(output_dir=str(out), max_steps=3, eval_split="train"))
        result = trainer.train()
        facts = {"dir": out, "trainer": trainer, "result": result, "log_history": list(trainer.log_history),
                 "config_backend": getattr(trainer.config, "backend", None)}
        facts["evaluate"] = trainer.evaluate()
        facts["saved_to"] = trainer.save_model(str(kit.workdir / "saved"))
    except Exception as exc:  # the check reports what the backend raised
        raise ContractFailure(f"create_rl_trainer(backend={kit.backend!r}, max_steps=3).train() then evaluate() and "
                              f"save_model() raised {type(exc).__name__}: {exc}") from exc
    return facts


def _killed_and_resumed(kit: Kit) -> dict[str, Any]:
    """The same run twice through the CLI: once straight, once killed with SIGKILL after checkpoint KILL_AFTER,
    given a half-written newer checkpoint, and resumed with --resume."""
    common = dict(max_steps=STEPS, save_steps=1, loss_type=LOSS)
    straight = kit.workdir / "straight"
    proc = kit.cli("--log-format", "json", "train", str(kit.config_file("straight", output_dir=str(straight),
                                                                         **common)))
    _succeeded(proc, "the uninterrupted run (aligntune train)")
    killed = kit.workdir / "killed"
    config = kit.config_file("killed", output_dir=str(killed), **common)
    log = kit.workdir / "killed.log"
    # Each step pauses, so that the kill lands just after checkpoint KILL_AFTER, not after the run has finished.
    process = kit.start(log, "train", str(config), ALIGNTUNE_CONTRACT_PAUSE="0.5")
    _wait(lambda: any(c.complete and c.step >= KILL_AFTER for c in _checkpoints(killed)), process, log,
          f"checkpoint-{KILL_AFTER} was complete")
    process.send_signal(signal.SIGKILL)
    process.wait()
    complete = [c.step for c in _checkpoints(killed) if c.complete]
    _expect(complete and max(complete) < STEPS,
            f"the run to be killed after checkpoint-{KILL_AFTER} left complete checkpoints {complete} (none, or it "
            "finished before the kill: each step pauses 0.5 s in the kit's loss, so the backend must call it)")
    last = max(complete)
    torn = killed / f"checkpoint-{last + 1}"
    if not torn.exists():  # as if the kill had come while it was written: weights cut short, no marker
        shutil.copytree(killed / f"checkpoint-{last}", torn)
        from aligntune.runs import MARKER

        (torn / MARKER).unlink()
        for weights in torn.glob("*.safetensors"):
            weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    # Another run's checkpoints, for the changed-settings check (a copy: that check must not disturb this run).
    shutil.copytree(killed, kit.workdir / "killed-copy")
    resumed = kit.cli("--log-format", "json", "train", str(config), "--resume")
    return {"straight": straight, "straight_log": proc.stderr, "killed": killed, "killed_log": log.read_text("utf-8"),
            "last_complete": last, "torn": torn.name, "resumed": resumed, "common": common}


def _long_run(kit: Kit) -> dict[str, Any]:
    """A long CLI run (each step paused) on which a second run is tried, then stopped with SIGTERM."""
    out = kit.workdir / "long"
    config = kit.config_file("long", output_dir=str(out), max_steps=100000, loss_type=LOSS)
    log = kit.workdir / "long.log"
    process = kit.start(log, "train", str(config), ALIGNTUNE_CONTRACT_PAUSE="0.1")
    try:
        from aligntune.runs import LOCK_FILE

        lock = out / LOCK_FILE
        _wait(lambda: lock.is_file() and str(process.pid) in lock.read_text(encoding="utf-8"), process, log,
              f"the run held the output-directory lock ({lock})")
        started = time.monotonic()
        second = kit.cli("train", str(config), "--overwrite-output-dir")
        facts: dict[str, Any] = {"dir": out, "second": second, "second_seconds": time.monotonic() - started,
                                 "first_alive": process.poll() is None}
        _wait(lambda: len(_step_losses(log.read_text(encoding="utf-8"))) >= 2, process, log, "two logged steps")
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=300)
        except subprocess.TimeoutExpired:
            raise ContractFailure("the run did not stop within 300 s of SIGTERM") from None
        facts.update(returncode=process.returncode, log=log.read_text(encoding="utf-8"))
        return facts
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# -- the checks ------------------------------------------------------------------------------------------------------


def check_trainer_surface(kit: Kit) -> None:
    from aligntune.plugins import BackendTrainer, TrainOutcome

    facts = kit.shared("the in-process run", lambda: _basic_run(kit))
    _expect(isinstance(facts["trainer"], BackendTrainer), "create_rl_trainer did not return a BackendTrainer")
    _expect(facts["config_backend"] == kit.backend,
            f"trainer.config.backend is {facts['config_backend']!r}, expected {kit.backend!r}")
    result = facts["result"]
    _expect(isinstance(result, TrainOutcome) and isinstance(result.metrics, Mapping),
            f"train() returned {type(result).__name__}, which lacks global_step and a metrics mapping")
    _expect(result.global_step == 3, f"train() returned global_step {result.global_step} after max_steps=3")
    losses = [entry["loss"] for entry in facts["log_history"] if "loss" in entry]
    _expect(len(losses) == 3 and all(math.isfinite(v) for v in losses),
            f"log_history holds losses {losses}, expected 3 finite ones (logging_steps=1, max_steps=3)")
    metrics = facts["evaluate"]
    _expect(isinstance(metrics, Mapping) and any(key.startswith("eval_") for key in metrics),
            f"evaluate() returned {metrics!r:.200}, expected a mapping of eval_<metric> values")
    saved = kit.workdir / "saved"
    _expect(Path(str(facts["saved_to"])).resolve() == saved.resolve(),
            f"save_model({str(saved)!r}) returned {facts['saved_to']!r}, not that directory")
    _weights(saved)
    _record(saved)
    _weights(facts["dir"])  # train() left the model and the record in output_dir
    _record(facts["dir"])


def check_record_schema(kit: Kit) -> None:
    from aligntune.runs.record import RunRecord
    from aligntune.runs.record_schema import load_schema, validate

    facts = kit.shared("the in-process run", lambda: _basic_run(kit))
    data = _record(facts["dir"])
    problems = validate(data, load_schema())
    _expect(not problems, "aligntune_run.json breaks the shipped schema: "
            + "; ".join(f"{p.path} {p.message}" for p in problems[:8]))
    record = RunRecord.from_json(data, source=str(facts["dir"] / "aligntune_run.json"))
    _expect(record.backend == kit.backend, f"the record names backend {record.backend!r}, expected {kit.backend!r}")
    written_by = record.written_by.distribution if record.written_by is not None else None
    _expect(written_by == kit.distribution(),
            f"the record's written_by names {written_by!r}, not the backend's distribution {kit.distribution()!r}")
    _expect(record.run.stop_reason == "finished" and record.run.model_saved,
            f"a finished run's record says stop_reason {record.run.stop_reason!r}, model_saved "
            f"{record.run.model_saved!r}")
    _expect(record.global_step == 3, f"the record says global_step {record.global_step}, expected 3")


def check_pair_counts(kit: Kit) -> None:
    facts = kit.shared("the in-process run", lambda: _basic_run(kit))
    rows = sum(1 for line in kit.data_file.read_text(encoding="utf-8").splitlines() if line.strip())
    data = _record(facts["dir"]).get("data") or {}
    for split in ("train", "eval"):
        part = data.get(split)
        _expect(isinstance(part, dict) and part.get("adapter") and part.get("tokenization"),
                f"the record's data.{split} lacks the adapter's or the tokenization's pair counts: {part!r:.300}")
        adapter, tokens = part["adapter"], part["tokenization"]
        _expect(adapter.get("read") == rows, f"data.{split}.adapter.read is {adapter.get('read')}, but "
                                             f"{kit.data_file.name} has {rows} rows")
        _expect(adapter.get("kept", 0) + sum(adapter.get("dropped", {}).values()) == rows,
                f"data.{split}.adapter: kept {adapter.get('kept')} + dropped {adapter.get('dropped')} != {rows} read")
        _expect(tokens["pairs_in"] == adapter["kept"],
                f"data.{split}.tokenization.pairs_in {tokens['pairs_in']} != adapter kept {adapter['kept']}")
        _expect(tokens["pairs_kept"] + sum(tokens["dropped"].values()) == tokens["pairs_in"],
                f"data.{split}.tokenization: kept {tokens['pairs_kept']} + dropped {tokens['dropped']} != "
                f"{tokens['pairs_in']} in")


def check_eval_and_export(kit: Kit) -> None:
    facts = kit.shared("the in-process run", lambda: _basic_run(kit))
    run_dir = facts["dir"]
    results = kit.workdir / "eval"
    config = kit.workdir / "eval.yaml"
    options = dict(model_path=str(run_dir), dataset_name=str(kit.data_file), split="train", max_samples=16,
                   metrics=["reward_margin", "preference_accuracy"], output_dir=str(results))
    config.write_text("".join(f"{key}: {json.dumps(value)}\n" for key, value in options.items()), encoding="utf-8")
    _succeeded(kit.cli("eval", str(config)), f"aligntune eval (model_path: {run_dir})")
    scored = json.loads((results / "results.json").read_text(encoding="utf-8")).get("metrics", {})
    _expect(isinstance(scored.get("reward_margin"), (int, float)) and math.isfinite(scored["reward_margin"]),
            f"aligntune eval wrote no finite reward_margin: {scored!r:.300}")
    exported = kit.workdir / "export"
    _succeeded(kit.cli("export", str(run_dir), "--output", str(exported)), f"aligntune export {run_dir}")
    for name in ("aligntune_run.json", "README.md"):
        _expect((exported / name).is_file(), f"aligntune export wrote no {name} into {exported}")
    _weights(exported)


def check_kill_9_resume(kit: Kit) -> None:
    import torch

    facts = kit.shared("the killed and resumed run", lambda: _killed_and_resumed(kit))
    _succeeded(facts["resumed"], "aligntune train --resume after SIGKILL")
    last = facts["last_complete"]
    straight = _step_losses(facts["straight_log"])
    _expect(sorted(straight) == list(range(1, STEPS + 1)),
            f"the uninterrupted run logged steps {sorted(straight)}, expected 1..{STEPS} (--log-format json "
            "metrics events, logging_steps=1)")
    joined = {step: loss for step, loss in _step_losses(facts["killed_log"]).items() if step <= last}
    joined.update(_step_losses(facts["resumed"].stderr))
    differ = [f"step {s}: {joined.get(s)} vs {straight[s]}" for s in straight if joined.get(s) != straight[s]]
    _expect(not differ, f"killed after checkpoint-{last} and resumed, the per-step losses differ from the "
                        f"uninterrupted run's: {'; '.join(differ[:5])}")
    ours, reference = _weights(facts["killed"]), _weights(facts["straight"])
    _expect(ours.keys() == reference.keys(), f"the resumed run saved tensors {sorted(ours)[:5]}..., the "
                                             f"uninterrupted one {sorted(reference)[:5]}...")
    unequal = [name for name in reference if not torch.equal(ours[name], reference[name])]
    _expect(not unequal, f"the final weights after resuming differ from the uninterrupted run's (not bit-exact): "
                         f"{unequal[:5]}")
    record = _record(facts["killed"])
    resumed_from = (record.get("run") or {}).get("resumed_from") or {}
    _expect(resumed_from.get("step") == last and record["run"].get("stop_reason") == "finished",
            f"the resumed run's record says resumed_from {resumed_from}, stop_reason "
            f"{record['run'].get('stop_reason')!r}; expected step {last}, finished")


def check_half_written_checkpoint(kit: Kit) -> None:
    facts = kit.shared("the killed and resumed run", lambda: _killed_and_resumed(kit))
    resumed = facts["resumed"]
    _succeeded(resumed, f"aligntune train --resume with a half-written {facts['torn']} beside complete ones")
    warned = [event for event in _events(resumed.stderr)
              if "incomplete" in json.dumps(event) and facts["torn"] in json.dumps(event)]
    _expect(warned, f"resuming did not warn that the half-written {facts['torn']} was skipped")
    record = _record(facts["killed"])
    step = ((record.get("run") or {}).get("resumed_from") or {}).get("step")
    _expect(step == facts["last_complete"], f"resumed from step {step}, not from the last complete checkpoint "
                                            f"{facts['last_complete']} (the half-written {facts['torn']} was used?)")
    incomplete = [c.path.name for c in _checkpoints(facts["killed"]) if not c.complete]
    _expect(not incomplete, f"after the resumed run finished, incomplete checkpoints remain: {incomplete}")


def check_changed_settings_refused(kit: Kit) -> None:
    from aligntune.core.backend_factory import create_rl_trainer
    from aligntune.errors import OutputDirError, ResumeError

    facts = kit.shared("the killed and resumed run", lambda: _killed_and_resumed(kit))
    copy = kit.workdir / "killed-copy"
    # The kit's loss plugin is not registered in this process: the built-in sigmoid stands in (a change too).
    settings = kit.settings(output_dir=str(copy), **{**facts["common"], "loss_type": "sigmoid"})
    beta = 2 * float(settings.get("beta", 0.1))
    try:
        create_rl_trainer(**{**settings, "beta": beta}).train(resume_from_checkpoint=True)
    except ResumeError as exc:
        _expect("beta" in str(exc), f"resuming with beta changed to {beta} was refused without naming beta: {exc}")
    else:
        raise ContractFailure(f"train(resume_from_checkpoint=True) with changed settings (beta -> {beta}, loss_type "
                              f"{LOSS} -> sigmoid) resumed another run's checkpoint instead of raising ResumeError")
    try:
        create_rl_trainer(**settings).train()
    except OutputDirError:
        pass
    else:
        raise ContractFailure("train() started afresh in an output_dir holding another run's checkpoints instead "
                              "of raising OutputDirError")


def check_non_finite_stop(kit: Kit) -> None:
    from aligntune.errors import NonFiniteError

    out = kit.workdir / "nan"
    config = kit.config_file("nan", output_dir=str(out), max_steps=6, save_steps=1, loss_type=LOSS)
    proc = kit.cli("train", str(config), ALIGNTUNE_CONTRACT_NAN_AT=str(NAN_AT))
    _expect(proc.returncode == NonFiniteError.exit_code,
            f"a NaN loss at step {NAN_AT} did not stop the run with exit code {NonFiniteError.exit_code} "
            f"(NonFiniteError): exit {proc.returncode}; stderr ends:\n{_tail(proc.stderr)}")
    _expect(f"step {NAN_AT}" in proc.stderr, f"the error does not name step {NAN_AT}: {_tail(proc.stderr, 800)}")
    _expect(not list(out.glob("*.safetensors")), f"a final model was saved in {out} after a NaN loss")
    run = _record(out).get("run") or {}
    _expect(run.get("stop_reason") == "non-finite" and run.get("model_saved") is False,
            f"the record says stop_reason {run.get('stop_reason')!r}, model_saved {run.get('model_saved')!r}; "
            "expected 'non-finite', false")
    complete = [c.step for c in _checkpoints(out) if c.complete]
    _expect(complete and max(complete) == NAN_AT - 1,
            f"complete checkpoints {complete}: expected the last good one, checkpoint-{NAN_AT - 1}, and none after")
    for folder in sorted({path.parent for path in out.rglob("*.safetensors")}):
        bad = [name for name, tensor in _weights(folder).items() if not bool(tensor.isfinite().all())]
        _expect(not bad, f"non-finite weights saved in {folder}: {bad[:5]}")


def check_output_dir_lock(kit: Kit) -> None:
    facts = kit.shared("the long run", lambda: _long_run(kit))
    second = facts["second"]
    _expect(second.returncode == 2 and "in use by another aligntune run" in second.stderr,
            f"a second run on a busy output_dir (with --overwrite-output-dir) exited {second.returncode}, expected "
            f"2 and 'is in use by another aligntune run'; stderr ends:\n{_tail(second.stderr)}")
    _expect(facts["first_alive"], "the first run died when a second one tried its output_dir")


def check_sigterm_checkpoint(kit: Kit) -> None:
    from aligntune.errors import TrainingInterrupted

    facts = kit.shared("the long run", lambda: _long_run(kit))
    _expect(facts["returncode"] == TrainingInterrupted.exit_code,
            f"after SIGTERM the run exited {facts['returncode']}, expected {TrainingInterrupted.exit_code} "
            f"(TrainingInterrupted); stderr ends:\n{_tail(facts['log'])}")
    checkpoints = _checkpoints(facts["dir"])
    _expect(len(checkpoints) == 1 and checkpoints[0].complete,
            f"after SIGTERM (save_steps: null) expected one complete checkpoint, found "
            f"{[(c.path.name, c.complete) for c in checkpoints]}")
    _expect(checkpoints[0].step >= 2, f"the SIGTERM checkpoint is at step {checkpoints[0].step}, but two steps "
                                      "were logged before the signal")
    _weights(checkpoints[0].path)
    stop = (_record(facts["dir"]).get("run") or {}).get("stop_reason")
    _expect(stop == "interrupted", f"the record says stop_reason {stop!r} after SIGTERM, expected 'interrupted'")


CHECKS: dict[str, Callable[[Kit], None]] = {
    "trainer-surface": check_trainer_surface,
    "record-schema": check_record_schema,
    "pair-counts": check_pair_counts,
    "eval-and-export": check_eval_and_export,
    "kill-9-resume": check_kill_9_resume,
    "half-written-checkpoint-skipped": check_half_written_checkpoint,
    "changed-settings-refused": check_changed_settings_refused,
    "non-finite-stop": check_non_finite_stop,
    "output-dir-lock": check_output_dir_lock,
    "sigterm-checkpoint": check_sigterm_checkpoint,
}


def run_checks(kit: Kit, names: Sequence[str]) -> list[CheckResult]:
    results = []
    for name in names:
        started = time.monotonic()
        try:
            CHECKS[name](kit)
        except ContractFailure as failure:
            results.append(CheckResult(name, False, time.monotonic() - started, str(failure)))
        except Exception as exc:  # a crash in the backend under test is a failed check, with what it raised
            results.append(CheckResult(name, False, time.monotonic() - started,
                                       f"raised {type(exc).__name__}: {exc}"))
        else:
            results.append(CheckResult(name, True, time.monotonic() - started))
    return results
