"""The run lifecycle of the TRL backend's trainer, as a mixin over `transformers.Trainer`.

The rules live in `aligntune.runs` (backend-independent); this wires them into Trainer's loop: the output-directory
lock and checks when `train()` starts, resuming only complete checkpoints of the same settings (the marker is
written last, rotation happens after it), the non-finite guard just before each optimizer step, a checkpoint on
SIGINT/SIGTERM, whole-run metrics that survive a resume, and the run record (`aligntune_run.json`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import attrs
import structlog
import torch
from aligntune.data.length_report import announce
from aligntune.errors import ConfigError, NonFiniteError, ResumeError, TrainingInterrupted
from aligntune.launch import run_record_entry
from aligntune.modeling import ref_cache
from aligntune.runs import (
    MARKER,
    InterruptRequests,
    NonFiniteGuard,
    NonFiniteStop,
    OutputDirLock,
    latest_complete_checkpoint,
    list_checkpoints,
    prepare_output_dir,
    resolve_resume_checkpoint,
    resolved_path,
    run_fingerprint,
    stream_source_digest,
    write_json_atomic,
)
from aligntune.runs.record import (
    DataReports,
    DataSplit,
    Processes,
    ReferenceLogProbs,
    ResumedFrom,
    RunRecord,
    RunStatus,
    TokenizationCounts,
    TrainMetrics,
)
from transformers import TrainerCallback
from transformers.trainer_utils import TrainOutput, rotate_checkpoints

_log = structlog.get_logger("aligntune.backend.trl")


def _check_not_finished(checkpoint: Path) -> None:
    """Trainer would run one step past the end when resumed from a run's last checkpoint: refuse instead."""
    try:
        state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if state.get("max_steps") and state.get("global_step", 0) >= state["max_steps"]:
        raise ResumeError(
            f"{checkpoint} is the last step of a finished run ({state['global_step']} of {state['max_steps']} steps): "
            f"there is nothing left to train; its model is in {checkpoint.parent}. Start a new run to train further."
        )


class TrainResult(TrainOutput):
    """transformers' `TrainOutput` (global_step, training_loss, metrics) that also answers AlignTune 0.x's keys:
    `result["model_path"]`, `["final_loss"]` (the last logged loss), `["train_loss"]`, `["global_step"]`, and any
    metric name."""

    def __new__(cls, global_step: int, training_loss: float, metrics: dict[str, float], *, output_dir: str):
        result = super().__new__(cls, global_step, training_loss, metrics)
        result.metrics.setdefault("model_path", output_dir)
        return result

    def _as_dict(self) -> dict[str, Any]:
        last_loss = self.metrics.get("last_window/loss", self.training_loss)
        return {**self.metrics, "model_path": self.metrics["model_path"], "output_dir": self.metrics["model_path"],
                "final_loss": last_loss, "train_loss": self.training_loss, "training_loss": self.training_loss,
                "global_step": self.global_step, "total_steps": self.global_step,
                "training_time": self.metrics.get("train_runtime")}

    def __getitem__(self, key):  # type: ignore[override]
        if isinstance(key, str):
            values = self._as_dict()
            if key not in values:
                raise KeyError(f"{key!r}; the result has: {', '.join(sorted(values))}")
            return values[key]
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        return self._as_dict().get(key, default)

    def keys(self):
        return self._as_dict().keys()


@attrs.define
class RunState:
    """What the run record says about this run beyond the configuration. `totals` is saved in every checkpoint's
    marker, so a resumed run reports the whole run, not just the part after the resume."""

    stop_reason: str = "not started"
    resumed_from: dict[str, Any] | None = None
    initial_step: int = 0
    # whole-run sums and counts per metric (micro-batch means, as in each logged window); loss per optimizer step
    totals: dict[str, list[float]] = attrs.Factory(dict)
    step_loss: float = 0.0  # the current optimizer step's loss, summed over its micro-batches
    window_loss: list[float] = attrs.Factory(lambda: [0.0, 0])  # finite-step loss sum and steps since the last log
    last_good_step: tuple[int, float, float | None] | None = None  # (step, loss, grad norm)

    def add(self, key: str, value: float) -> None:
        total = self.totals.setdefault(key, [0.0, 0])
        total[0] += value
        total[1] += 1

    def whole_run(self) -> dict[str, float]:
        return {key: total / count for key, (total, count) in sorted(self.totals.items()) if count}

    def as_dict(self) -> dict[str, Any]:
        return {"totals": self.totals}

    def restore(self, saved: dict[str, Any]) -> None:
        self.totals = {key: list(value) for key, value in saved.get("totals", {}).items()}


class StopOnSignal(TrainerCallback):
    """After a SIGINT/SIGTERM: save a complete checkpoint at the end of the current step and stop."""

    def __init__(self, trainer: RunLifecycleMixin):
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs):
        interrupts = self.trainer._interrupts
        requested = interrupts is not None and interrupts.requested is not None
        accelerator = self.trainer.accelerator
        if accelerator.num_processes > 1:  # every process must stop at the same step
            flag = torch.tensor([float(requested)], device=accelerator.device)
            requested = bool(accelerator.reduce(flag, "sum").item() > 0)
        if requested:
            control.should_save = True
            control.should_training_stop = True
        return control


class RunLifecycleMixin:
    # Why this trainer cannot resume a checkpoint exactly (a backend sets it); None: it can. A resume that would
    # silently train something else is refused instead.
    resume_unsupported: str | None = None

    """Mixed in before `DPOTrainer`; `_init_lifecycle` must run before `DPOTrainer.__init__`."""

    def _init_lifecycle(self, config) -> None:
        self.tokenization_reports: dict[str, dict[str, Any]] = {}
        self._length_counters: dict[str, Any] = {}  # streams: counted as training reads them
        self._guard = NonFiniteGuard(policy=config.on_nonfinite, max_skipped=config.max_nonfinite_steps)
        self._run = RunState()
        self._interrupts: InterruptRequests | None = None
        self._fingerprint: dict[str, Any] | None = None

    # -- logging ---------------------------------------------------------------------------------------------------

    def _window_loss_fields(self) -> dict[str, float]:
        """For a training log line: the mean loss over the window's trained steps when some were skipped."""
        total, steps = self._run.window_loss
        self._run.window_loss = [0.0, 0]
        skipped = self._guard.end_window()
        if not skipped:
            return {}
        # Trainer stands in a running average for a NaN step; report the finite steps' mean instead.
        return {"loss": total / steps if steps else float("nan"), "nonfinite_steps_skipped": skipped}

    def _summary_metrics(self, partial_window: dict[str, float]) -> dict[str, float]:
        out = {f"whole_run/{key}": value for key, value in self._run.whole_run().items()}
        out["whole_run/steps"] = self.state.global_step
        out["whole_run/nonfinite_steps_skipped"] = self._guard.skipped_total
        window_loss, window_steps = self._run.window_loss
        last = dict(partial_window)
        if window_steps:
            last["loss"] = window_loss / window_steps
        if not last:  # the run ended on a log line: the last window is the last logged one
            logged = [entry for entry in self.state.log_history if "loss" in entry and "train_runtime" not in entry]
            last = {key: value for key, value in (logged[-1] if logged else {}).items()
                    if key not in ("epoch", "step", "learning_rate", "grad_norm")}
            window_steps = self.state.global_step - (logged[-2]["step"] if len(logged) > 1 else 0) if logged else 0
        out.update({f"last_window/{key}": value for key, value in last.items()})
        out["last_window/steps"] = window_steps
        return out

    # -- the non-finite guard --------------------------------------------------------------------------------------

    def training_step(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        loss = super().training_step(*args, **kwargs)
        self._run.step_loss += float(loss)
        return loss

    def _get_grad_norm(self, model, grad_norm=None):
        """Runs once per optimizer step, just before it: the place to stop or drop a non-finite update."""
        grad_norm = super()._get_grad_norm(model, grad_norm=grad_norm)
        value = None if grad_norm is None else float(grad_norm)
        if self.accelerator.scaler is not None:
            value = None  # fp16 loss scaling: an overflowing gradient is the scaler's to skip and rescale
        elsewhere = False
        if self.accelerator.num_processes > 1:  # decide the same on every process
            flag = torch.tensor([float(self._guard.loss_flagged)], device=self.accelerator.device)
            elsewhere = bool(self.accelerator.reduce(flag, "sum").item() > 0)
        step_loss, self._run.step_loss = self._run.step_loss, 0.0
        if self._guard.decide(self.state.global_step + 1, value, loss_flagged_elsewhere=elsewhere):
            self._drop_update(model)
        else:
            self._run.last_good_step = (self.state.global_step + 1, step_loss, value)
            self._run.add("loss", step_loss)
            self._run.window_loss[0] += step_loss
            self._run.window_loss[1] += 1
        return grad_norm

    def _drop_update(self, model) -> None:
        if self.accelerator.scaler is not None:
            for parameter in model.parameters():  # the scaler skips a step with non-finite gradients
                if parameter.grad is not None:
                    parameter.grad.fill_(float("nan"))
        else:
            model.zero_grad(set_to_none=True)  # optimizers skip parameters without a gradient: no update at all

    def _weights_finite(self) -> bool:
        parameters = [p for p in self.accelerator.unwrap_model(self.model).parameters() if p.requires_grad]
        if not parameters:
            return True
        return bool(torch.stack([torch.isfinite(p.detach()).all() for p in parameters]).all().item())

    # -- checkpoints -----------------------------------------------------------------------------------------------

    def run_fingerprint(self) -> dict[str, Any]:
        if self._fingerprint is None:
            if self.aligntune_config.streaming:  # a stream cannot be read twice: its source stands for it
                train_data = stream_source_digest(self.aligntune_config)
            else:
                train_data = ref_cache.data_fingerprint(
                    self.train_dataset.select_columns(["prompt_ids", "chosen_ids", "rejected_ids"]))
            self._fingerprint = run_fingerprint(self.aligntune_config, train_data=train_data,
                                                processes=self.accelerator.num_processes)
        return self._fingerprint

    def _save_checkpoint(self, model, trial) -> None:
        """HF's checkpoint, then (last, atomically) the marker that makes it complete, then the rotation."""
        if not self._weights_finite():
            raise NonFiniteStop(self.state.global_step, "the weights are not finite", "no checkpoint was written")
        run_dir = Path(self._get_output_dir(trial))
        folder = run_dir / f"checkpoint-{self.state.global_step}"
        if self.args.should_save and folder.exists():
            shutil.rmtree(folder)  # left half-written by a killed run, or about to be re-written by this resumed one
        limit = self.args.save_total_limit
        self.args.save_total_limit = None  # rotate only once the new checkpoint is complete
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.save_total_limit = limit
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            write_json_atomic(folder / MARKER, {
                "format": 1,
                "step": self.state.global_step,
                "fingerprint": self.run_fingerprint(),
                "run_state": {**self._run.as_dict(), "nonfinite_steps_skipped": self._guard.skipped_total,
                              "train_tokens": self._aligntune_train_tokens},
            })
            rotate_checkpoints(output_dir=str(run_dir), save_total_limit=limit,
                               best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=True)

    # -- the run ---------------------------------------------------------------------------------------------------

    def train(self, resume_from_checkpoint: bool | str | None = None, **kwargs: Any):
        """Train, resuming if asked (`True`/"latest": the latest complete checkpoint, "auto": that or a fresh start,
        or a path); ends with the model, tokenizer and `aligntune_run.json` in `output_dir`.

        Raises `NonFiniteError` (nothing saved over a good model) or `TrainingInterrupted` (a checkpoint saved)."""
        config = self.aligntune_config
        if config.on_nonfinite == "skip" and self.is_deepspeed_enabled:
            raise ConfigError(
                "on_nonfinite: skip is not supported under DeepSpeed (its optimizer keeps gradients outside the "
                "parameters, so a step cannot be dropped from here); use on_nonfinite: stop, or DeepSpeed's own fp16 "
                "loss scaling, which skips overflowing steps itself"
            )
        requested = config.resume_from_checkpoint if resume_from_checkpoint is None else resume_from_checkpoint
        output_dir = Path(self.args.output_dir)
        lock = OutputDirLock(output_dir).acquire() if self.is_world_process_zero() else None
        try:
            checkpoint = resolve_resume_checkpoint(output_dir, requested, fingerprint=self.run_fingerprint(),
                                                   force=config.force_resume)
            if checkpoint is not None and self.resume_unsupported is not None:
                raise ResumeError(f"cannot resume {checkpoint.path}: {self.resume_unsupported}")
            if self.is_world_process_zero():
                prepare_output_dir(output_dir, resuming=checkpoint is not None, overwrite=config.overwrite_output_dir)
            if checkpoint is not None:
                _check_not_finished(checkpoint.path)
                self._resume_state(checkpoint)
            self._run.stop_reason = "running"
            self._write_record(output_dir)
            with InterruptRequests(config.save_on_interrupt) as interrupts:
                self._interrupts = interrupts
                try:
                    result = super().train(
                        resume_from_checkpoint=str(checkpoint.path) if checkpoint is not None else None, **kwargs)
                except NonFiniteStop as stop:
                    self._run.stop_reason = "non-finite"
                    self._write_record(output_dir)
                    raise NonFiniteError(self._nonfinite_message(stop, output_dir)) from None
                except BaseException as exc:
                    self._run.stop_reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else \
                        f"failed: {type(exc).__name__}"
                    self._write_record(output_dir)
                    raise
                finally:
                    self._interrupts = None
            if config.streaming:  # the pair accounting of a stream is complete only now
                self._refresh_stream_reports()
                for name, report in self.tokenization_reports.items():
                    if report["pairs_in"]:
                        announce(report, name)
            if interrupts.requested is not None:
                self._run.stop_reason = "interrupted"
                self._write_record(output_dir)
                saved, _ = latest_complete_checkpoint(output_dir, warn=False)
                raise TrainingInterrupted(
                    f"training stopped by {interrupts.requested} at step {self.state.global_step}; checkpoint "
                    f"{saved.path if saved else '(none)'} is complete. Continue with --resume "
                    "(resume_from_checkpoint: true)."
                )
            if not self._weights_finite():
                self._run.stop_reason = "non-finite"
                self._write_record(output_dir)
                raise NonFiniteError(self._nonfinite_message(
                    NonFiniteStop(self.state.global_step, "the weights are not finite", "the model was not saved"),
                    output_dir))
            self._run.stop_reason = "finished"
            self.save_model(str(output_dir))
        finally:
            if lock is not None:
                lock.release()
        result.metrics.update({key: value for key, value in self.state.log_history[-1].items()
                               if key.startswith(("whole_run/", "last_window/"))})
        if self.is_world_process_zero():
            checkpoints = [str(c.path) for c in list_checkpoints(output_dir) if c.complete]
            _log.info("run finished: model, tokenizer and aligntune_run.json saved", output_dir=str(output_dir),
                      steps=self.state.global_step, checkpoints=checkpoints or None,
                      record=str(output_dir / "aligntune_run.json"))
        # Every process leaves together, once the main one has written everything: a process that tears down its
        # process group while another is still working can be aborted by gloo (torchrun then fails the job).
        self.accelerator.wait_for_everyone()
        return TrainResult(*result, output_dir=str(output_dir))

    def _resume_state(self, checkpoint) -> None:
        saved = (checkpoint.marker or {}).get("run_state", {})
        self._run.restore(saved)
        self._guard.skipped_total = int(saved.get("nonfinite_steps_skipped", 0))
        self._aligntune_train_tokens = int(saved.get("train_tokens", 0))
        self._run.resumed_from = {"checkpoint": str(checkpoint.path.resolve()), "step": checkpoint.step}
        self._run.initial_step = checkpoint.step
        _log.info("resuming", checkpoint=str(checkpoint.path), step=checkpoint.step)

    def _nonfinite_message(self, stop: NonFiniteStop, output_dir: Path) -> str:
        logged = [entry for entry in self.state.log_history if "loss" in entry]
        last = logged[-1] if logged else None
        shown = ", ".join(f"{key} {value:.4g}" for key, value in last.items()
                          if key in ("loss", "grad_norm", "learning_rate", "rewards/margins")) if last else ""
        good, _ = latest_complete_checkpoint(output_dir, warn=False)
        last_good = self._run.last_good_step
        return (
            f"training stopped at step {stop.step}: {stop.quantity}; {stop.why}. "
            + (f"Last finite step {last_good[0]}: loss {last_good[1]:.4g}, grad_norm {last_good[2]:.4g}. "
               if last_good and last_good[2] is not None else "")
            + (f"Last logged values (step {last['step']}): {shown}. " if last else "No values were logged yet. ")
            + (f"Last good checkpoint: {good.path} (resume from it with --resume after the fix). " if good else
               "No checkpoint was saved. ")
            + "Usual causes: a learning_rate too high, a beta too large or small, fp16 overflow (try bf16 or fp32). "
            "on_nonfinite: skip drops such steps instead of stopping."
        )

    # -- outputs ---------------------------------------------------------------------------------------------------

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> str:
        """Save the model (or LoRA adapter), the tokenizer and `aligntune_run.json`; returns the directory."""
        super().save_model(output_dir, _internal_call=_internal_call)
        directory = Path(output_dir or self.args.output_dir)
        if self.is_world_process_zero():
            record = self.run_record(model_saved=True)
            record.write(directory)
            self._write_model_card(directory, record)  # over PEFT's generic card for an adapter
        return str(directory)

    def create_model_card(self, model_name: str | None = None, dataset_name: str | None = None, tags: Any = None,
                          **kwargs: Any) -> None:
        """aligntune's model card in output_dir: the real base model (TRL's names a local one "None"), the data, the
        loss and β, from the run record. `aligntune export` writes the same card, with evaluation results."""
        self._write_model_card(Path(self.args.output_dir))

    def _write_model_card(self, directory: Path, record: RunRecord | None = None) -> None:
        if not self.is_world_process_zero():
            return
        from aligntune.export import render_model_card

        directory.mkdir(parents=True, exist_ok=True)
        card = render_model_card(record if record is not None else self.run_record(), repo_id=self.args.hub_model_id,
                                 location=str(directory.resolve()))
        (directory / "README.md").write_text(card, encoding="utf-8")

    def _write_record(self, directory: Path, *, model_saved: bool = False) -> None:
        if self.is_world_process_zero():
            self.run_record(model_saved=model_saved).write(directory)

    def _refresh_stream_reports(self) -> None:
        for name, counter in self._length_counters.items():
            self.tokenization_reports[name] = counter.report()

    def run_record(self, *, model_saved: bool = False) -> RunRecord:
        """The record of this run; `model_saved`: whether the directory it goes into holds a model of it."""
        self._refresh_stream_reports()
        summary = next((entry for entry in reversed(self.state.log_history) if "train_runtime" in entry), {})
        reports = dict(getattr(self, "data_reports", {}) or {})
        for split, source in (getattr(self, "data_sources", {}) or {}).items():
            if source is not None:  # a stream's counts as of now
                reports[split] = source.report_now()
        splits: dict[str, DataSplit] = {}
        for split in ("train", "eval"):
            if reports.get(split) is not None or split in self.tokenization_reports:
                counted = self.tokenization_reports.get(split)
                splits[split] = DataSplit(adapter=reports.get(split), tokenization=None if counted is None else
                                          TokenizationCounts(**_split_counts(counted)))
        config = self.aligntune_config
        resumed = self._run.resumed_from
        return RunRecord.create(
            config,
            reference_free=self.reference_free,
            global_step=self.state.global_step,
            run=RunStatus(
                stop_reason=self._run.stop_reason,
                model_saved=model_saved,
                output_dir=str(Path(self.args.output_dir).resolve()),
                resumed_from=None if resumed is None else ResumedFrom(**resumed),
                steps_run=self.state.global_step - self._run.initial_step,
                max_steps=self.state.max_steps,
                nonfinite_steps_skipped=self._guard.skipped_total,
                on_nonfinite=config.on_nonfinite,
                fingerprint=self._fingerprint["digest"] if self._fingerprint else None,
            ),
            reference_log_probs=ReferenceLogProbs(precomputed=bool(getattr(self, "precompute_ref_logps", False)),
                                                  cache_hits=getattr(self, "ref_cache_hits", 0)),
            processes=Processes(world_size=self.accelerator.num_processes, **run_record_entry(config),
                                distributed_type=str(self.accelerator.distributed_type.value)),
            data=DataReports(**splits),
            train_metrics=TrainMetrics(
                whole_run={key.removeprefix("whole_run/"): value for key, value in summary.items()
                           if key.startswith("whole_run/")} or self._run.whole_run(),
                last_window={key.removeprefix("last_window/"): value for key, value in summary.items()
                             if key.startswith("last_window/")},
                this_session={key: value for key, value in summary.items()
                              if not key.startswith(("whole_run/", "last_window/"))},
            ),
        )


def _split_counts(report: dict[str, Any]) -> dict[str, Any]:
    """A tokenization report as `TokenizationCounts` takes it: the counts it names, the rest as they are."""
    named = ("pairs_in", "pairs_kept", "dropped")
    return {**{key: report[key] for key in named}, "more": {k: v for k, v in report.items() if k not in named}}


class JsonMetricsLog(TrainerCallback):
    """With JSON-lines logs: each logging step's metrics as one `metrics` event (in place of Trainer's printed
    dicts and progress bar), from the main process only."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            _log.info("metrics", step=state.global_step, **logs)
