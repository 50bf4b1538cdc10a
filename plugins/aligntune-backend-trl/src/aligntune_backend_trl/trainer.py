"""`AlignTuneDPOTrainer`: TRL's DPOTrainer with aligntune's forward pass and losses.

TRL keeps the integration: tokenization, batching, the optimiser loop, checkpoints, distributed launch. aligntune
owns the alignment math: `compute_loss` gets per-sequence log-probs from `aligntune.modeling.preference_logps`
(prefix-shared or two-sequence batches) and the per-pair loss from the resolved core loss, so the loss is the same
under every backend. Tokenization of plain-text pairs is batched; reference log-probs can be cached on disk.

The run lifecycle comes from `aligntune.runs` and is wired in here: the output-directory lock and checks, resuming
only complete checkpoints of the same settings (a marker written last), the non-finite guard before each optimizer
step, a checkpoint on SIGINT/SIGTERM, pairs counted through tokenization, and the run record.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import structlog

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import TrainerCallback
from transformers.trainer_utils import rotate_checkpoints
from trl import DPOTrainer

from aligntune.core.config import TrainConfig
from aligntune.core.run_record import build_run_record, write_run_record
from aligntune.data.length_report import announce, tokenization_report
from aligntune.errors import NonFiniteError, ResumeError, TrainingInterrupted
from aligntune.losses import ResolvedLoss
from aligntune.modeling import SHARED_KEY, CompletionLogps, preference_logps, split_pairs
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
    write_json_atomic,
)


_log = structlog.get_logger("aligntune.backend.trl")


def _plain_text_pairs(dataset, processing_class) -> bool:
    """Standard-format rows (strings) and a text tokenizer: tokenized here in batches, faster than TRL's per-row map."""
    from transformers import PreTrainedTokenizerBase

    if not isinstance(processing_class, PreTrainedTokenizerBase) or len(dataset) == 0:
        return False
    if not {"prompt", "chosen", "rejected"} <= set(dataset.column_names):
        return False
    first = dataset[0]
    return all(isinstance(first[key], str) for key in ("prompt", "chosen", "rejected"))


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def tokenize_plain_pairs(dataset, tokenizer, dataset_name: str):
    """TRL's tokenization of plain-text pairs (EOS appended to each response, the completion starting where prompt
    and prompt+response token lists diverge), done with batched calls to the fast tokenizer."""
    eos = tokenizer.eos_token or ""
    backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None

    def encode(texts: list[str]) -> list[list[int]]:
        if backend is not None:  # the Rust tokenizer directly: the same ids, without per-row Python conversion
            # encode_batch_fast (tokenizers >= 0.21) skips the character offsets we do not use.
            encode_batch = getattr(backend, "encode_batch_fast", backend.encode_batch)
            return [encoding.ids for encoding in encode_batch(texts, add_special_tokens=True)]
        return tokenizer(text=texts)["input_ids"]

    def tokenize(batch):
        prompts = batch["prompt"]
        chosen = [text if text.endswith(eos) else text + eos for text in batch["chosen"]]
        rejected = [text if text.endswith(eos) else text + eos for text in batch["rejected"]]
        prompt_ids = encode(prompts)
        chosen_full = encode([p + c for p, c in zip(prompts, chosen)])
        rejected_full = encode([p + r for p, r in zip(prompts, rejected)])
        out = {"prompt_ids": [], "chosen_ids": [], "rejected_ids": []}
        for p_ids, c_ids, r_ids in zip(prompt_ids, chosen_full, rejected_full):
            start = min(_common_prefix(p_ids, c_ids), _common_prefix(p_ids, r_ids))
            out["prompt_ids"].append(p_ids[:start])
            out["chosen_ids"].append(c_ids[start:])
            out["rejected_ids"].append(r_ids[start:])
        return out

    return dataset.map(tokenize, batched=True, batch_size=1000, desc=f"Tokenizing {dataset_name} dataset")


def _is_peft_model(model: torch.nn.Module) -> bool:
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)


def _pair_lengths(dataset):
    """(prompt, chosen, rejected) token counts of each tokenized pair."""
    columns = dataset.select_columns(["prompt_ids", "chosen_ids", "rejected_ids"])
    for batch in columns.iter(batch_size=2000):
        yield from zip(map(len, batch["prompt_ids"]), map(len, batch["chosen_ids"]), map(len, batch["rejected_ids"]))


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


class _RunState:
    """What the run record says about this run beyond the configuration; saved in every checkpoint's marker so a
    resumed run reports the whole run, not just the part after the resume."""

    def __init__(self) -> None:
        self.stop_reason = "not started"
        self.resumed_from: dict[str, Any] | None = None
        self.initial_step = 0
        # whole-run sums and counts per metric (micro-batch means, as in each logged window); loss per optimizer step
        self.totals: dict[str, list[float]] = {}
        self.step_loss = 0.0  # the current optimizer step's loss, summed over its micro-batches
        self.window_loss: list[float] = [0.0, 0]  # finite-step loss sum and step count since the last log line
        self.last_good_step: tuple[int, float, float | None] | None = None  # (step, loss, grad norm)

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


class _StopOnSignal(TrainerCallback):
    """After a SIGINT/SIGTERM: save a complete checkpoint at the end of the current step and stop."""

    def __init__(self, trainer: AlignTuneDPOTrainer):
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


class AlignTuneDPOTrainer(DPOTrainer):
    """A `trl.DPOTrainer` whose loss, log-probs and metrics come from aligntune's core."""

    def __init__(
        self,
        *args: Any,
        aligntune_config: TrainConfig,
        loss: ResolvedLoss,
        reference_free: bool,
        **kwargs: Any,
    ):
        # Set before DPOTrainer.__init__, which tokenizes and may precompute reference log-probs through our hooks.
        self.aligntune_config = aligntune_config
        self.aligntune_loss = loss
        self.reference_free = reference_free
        self._aligntune_metrics: dict[str, dict[str, list[float]]] = {"train": defaultdict(list), "eval": defaultdict(list)}
        self._aligntune_train_tokens = 0
        self.reference_forward_calls = 0
        self.ref_cache_hits = 0
        self.tokenization_reports: dict[str, dict[str, Any]] = {}
        self._guard = NonFiniteGuard(policy=aligntune_config.on_nonfinite, max_skipped=aligntune_config.max_nonfinite_steps)
        self._run = _RunState()
        self._interrupts: InterruptRequests | None = None
        self._fingerprint: dict[str, Any] | None = None
        super().__init__(*args, **kwargs)
        if self.reference_free:
            # TRL was told to "precompute" only so that it loads no reference model; nothing is precomputed.
            self.precompute_ref_logps = False
        self.add_callback(_StopOnSignal(self))

    # -- data ------------------------------------------------------------------------------------------------------

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        limit = self.aligntune_config.max_prompt_length
        # Tokenize with no length limit, then count and drop here: TRL would drop pairs whose prompt fills
        # max_length without a word.
        max_length = args.max_length
        args.max_length = None
        try:
            if _plain_text_pairs(dataset, processing_class):
                dataset = tokenize_plain_pairs(dataset, processing_class, dataset_name)
            else:
                dataset = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        finally:
            args.max_length = max_length
        report = tokenization_report(
            _pair_lengths(dataset), max_seq_length=max_length, max_prompt_length=limit,
            truncation_mode=args.truncation_mode,
        )
        self.tokenization_reports[dataset_name] = report
        if args.process_index == 0:
            announce(report, dataset_name)
        if limit is not None:

            def keep_prompt_end(example):
                return {"prompt_ids": example["prompt_ids"][-limit:]}

            dataset = dataset.map(keep_prompt_end, desc=f"Truncating prompts of {dataset_name} dataset to {limit} tokens")
        if report["dropped"]:
            # A pair whose prompt fills max_length has no completion token left to learn from (counted above).
            dataset = dataset.filter(lambda example: len(example["prompt_ids"]) < max_length,
                                     desc=f"Dropping fully truncated examples from {dataset_name} dataset")
        return dataset

    # -- reference -------------------------------------------------------------------------------------------------

    def _reference_context(self):
        """The model that plays the reference, and the context under which it does."""
        if self.ref_model is not None:
            return self.ref_model, contextlib.nullcontext()
        unwrapped = self.accelerator.unwrap_model(self.model)
        if _is_peft_model(unwrapped):
            # LoRA: the base model with the adapter disabled is the reference; no second copy exists.
            return self.model, unwrapped.disable_adapter()
        # Full fine-tuning with precomputed log-probs: before training, the policy is the reference.
        return self.model, contextlib.nullcontext()

    def reference_logps(self, inputs: dict[str, torch.Tensor]) -> CompletionLogps:
        """Reference log-probs of one batch, without gradients."""
        model, context = self._reference_context()
        self.reference_forward_calls += 1
        with torch.no_grad(), context:
            return preference_logps(model, inputs)

    def _ref_cache_key(self, dataset) -> str:
        model, _ = self._reference_context()
        settings = {
            "max_length": self.args.max_length,
            "precision": self.aligntune_config.precision,
            "bf16": bool(self.args.bf16),
            "fp16": bool(self.args.fp16),
            "dtype": str(next(model.parameters()).dtype),
        }
        return ref_cache.cache_key(model=ref_cache.model_fingerprint(self.accelerator.unwrap_model(model)),
                                   data=ref_cache.data_fingerprint(dataset), settings=settings)

    def _precompute_ref_logps(self, dataset, name, batch_size):
        if self.reference_free:
            return dataset
        config = self.aligntune_config
        cache_dir = Path(config.ref_logps_cache_dir) if config.ref_logps_cache_dir else ref_cache.default_cache_dir()
        key = self._ref_cache_key(dataset) if config.ref_logps_cache else None
        if key is not None:
            cached = ref_cache.load(cache_dir, key)
            if cached is not None and len(cached[0]) == len(dataset):
                self.ref_cache_hits += 1
                _log.info("reference log-probs read from the cache", dataset=name, path=str(cache_dir / f"{key}.pt"))
                dataset = dataset.add_column("ref_chosen_logps", cached[0])
                return dataset.add_column("ref_rejected_logps", cached[1])
        chosen, rejected = self._compute_reference_columns(dataset, name, batch_size)
        if key is not None and self.accelerator.is_main_process:
            path = ref_cache.save(cache_dir, key, chosen, rejected,
                                  {"model": config.model_name, "dataset": config.dataset_name, "split": name,
                                   "pairs": len(dataset)})
            _log.info("reference log-probs cached", dataset=name, path=str(path))
        dataset = dataset.add_column("ref_chosen_logps", chosen.tolist())
        return dataset.add_column("ref_rejected_logps", rejected.tolist())

    def _compute_reference_columns(self, dataset, name, batch_size):
        loader = self.accelerator.prepare(
            DataLoader(dataset, batch_size=batch_size, collate_fn=self.data_collator, shuffle=False)
        )
        chosen, rejected = [], []
        for batch in tqdm(loader, desc=f"Reference log-probs ({name})", disable=not self.is_local_process_zero()):
            with self.accelerator.autocast():
                ref = self.reference_logps(batch)
            ref_chosen, ref_rejected = split_pairs(ref.logps)
            ref_chosen, ref_rejected = self.accelerator.gather_for_metrics((ref_chosen, ref_rejected))
            chosen.append(ref_chosen.float().cpu())
            rejected.append(ref_rejected.float().cpu())
        return torch.cat(chosen), torch.cat(rejected)

    # -- loss ------------------------------------------------------------------------------------------------------

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        policy = preference_logps(model, inputs)
        policy_chosen, policy_rejected = split_pairs(policy.logps)
        chosen_lengths, rejected_lengths = split_pairs(policy.lengths)
        if self.reference_free:
            ref_chosen = ref_rejected = None
        elif "ref_chosen_logps" in inputs:
            ref_chosen, ref_rejected = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        else:
            ref_chosen, ref_rejected = split_pairs(self.reference_logps(inputs).logps)
        out = self.aligntune_loss.compute(
            policy_chosen_logps=policy_chosen,
            policy_rejected_logps=policy_rejected,
            ref_chosen_logps=ref_chosen,
            ref_rejected_logps=ref_rejected,
            chosen_lengths=chosen_lengths,
            rejected_lengths=rejected_lengths,
        )
        loss = out.losses.mean()
        if mode == "train":
            value = loss.item()
            self._guard.note_loss(value)
            if not math.isfinite(value):
                # Counted by the guard; this micro-batch's metrics would only carry the NaN into the logs.
                if return_outputs:
                    return loss, {"chosen_logps": policy_chosen.detach(), "rejected_logps": policy_rejected.detach()}
                return loss
        self._record_metrics(mode, inputs, policy, out)
        if return_outputs:
            return loss, {"chosen_logps": policy_chosen.detach(), "rejected_logps": policy_rejected.detach()}
        return loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    # -- metrics (TRL's names) -------------------------------------------------------------------------------------

    def _record_metrics(self, mode: str, inputs, policy: CompletionLogps, out) -> None:
        gather = self.accelerator.gather_for_metrics
        metrics: dict[str, list[float]] = defaultdict(list)
        chosen_rewards = gather(out.chosen_rewards)
        rejected_rewards = gather(out.rejected_rewards)
        metrics["rewards/chosen"].append(chosen_rewards.mean().item())
        metrics["rewards/rejected"].append(rejected_rewards.mean().item())
        metrics["rewards/accuracies"].append((chosen_rewards > rejected_rewards).float().mean().item())
        metrics["rewards/margins"].append((chosen_rewards - rejected_rewards).mean().item())
        policy_chosen, policy_rejected = split_pairs(policy.logps.detach())
        metrics["logps/chosen"].append(gather(policy_chosen).mean().item())
        metrics["logps/rejected"].append(gather(policy_rejected).mean().item())
        logits_chosen, logits_rejected = split_pairs(policy.mean_logits)
        metrics["logits/chosen"].append(gather(logits_chosen).mean().item())
        metrics["logits/rejected"].append(gather(logits_rejected).mean().item())
        accuracy_chosen, _ = split_pairs(policy.token_accuracy)
        metrics["mean_token_accuracy"].append(gather(accuracy_chosen).mean().item())
        if len(out.components) > 1:
            for name, values in out.components.items():
                metrics[f"loss/{name}"].append(gather(values.detach()).mean().item())
        if mode == "train":
            tokens = inputs["num_tokens"] if SHARED_KEY in inputs else inputs["attention_mask"].sum()
            self._aligntune_train_tokens += int(gather(tokens.reshape(1)).sum().item())
            metrics["num_tokens"] = [float(self._aligntune_train_tokens)]
        window = self._aligntune_metrics[mode]
        for key, values in metrics.items():
            if key == "num_tokens":  # a running count, not a mean
                window[key] = values
                continue
            window[key].extend(values)
            if mode == "train":
                self._run.add(key, values[-1])

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if self.model.training else "eval"
        collected = {key: sum(values) / len(values) for key, values in self._aligntune_metrics[mode].items() if values}
        self._aligntune_metrics[mode] = defaultdict(list)
        if mode == "eval":
            logs.update({f"eval_{key}": value for key, value in collected.items()})
        elif "train_runtime" in logs:
            # The closing summary: whole-run figures and the last (possibly partial) window, each labelled.
            logs.update(self._summary_metrics(collected))
        else:
            logs.update(collected)
            if "loss" in logs:
                total, steps = self._run.window_loss
                skipped = self._guard.end_window()
                if skipped:
                    # Trainer stands in a running average for a NaN step; report the finite steps' mean instead.
                    logs["loss"] = total / steps if steps else float("nan")
                    logs["nonfinite_steps_skipped"] = skipped
                self._run.window_loss = [0.0, 0]
        super().log(logs, start_time)

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

    @property
    def log_history(self) -> list[dict[str, float]]:
        """Every logged record (TRL's metric names: loss, rewards/*, logps/*, ...)."""
        return self.state.log_history

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
            self._fingerprint = run_fingerprint(
                self.aligntune_config,
                train_data=ref_cache.data_fingerprint(
                    self.train_dataset.select_columns(["prompt_ids", "chosen_ids", "rejected_ids"])),
            )
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
        requested = config.resume_from_checkpoint if resume_from_checkpoint is None else resume_from_checkpoint
        output_dir = Path(self.args.output_dir)
        lock = OutputDirLock(output_dir).acquire() if self.is_world_process_zero() else None
        try:
            checkpoint = resolve_resume_checkpoint(output_dir, requested, fingerprint=self.run_fingerprint(),
                                                   force=config.force_resume)
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
        return result

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

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Save the model (or LoRA adapter), the tokenizer and `aligntune_run.json`."""
        super().save_model(output_dir, _internal_call=_internal_call)
        self._write_record(Path(output_dir or self.args.output_dir), model_saved=True)

    def _write_record(self, directory: Path, *, model_saved: bool = False) -> None:
        if self.is_world_process_zero():
            write_run_record(directory, self.run_record(model_saved=model_saved))

    def run_record(self, *, model_saved: bool = False) -> dict[str, Any]:
        """The record of this run; `model_saved`: whether the directory it goes into holds a model of it."""
        summary = next((entry for entry in reversed(self.state.log_history) if "train_runtime" in entry), {})
        reports = self.data_reports if hasattr(self, "data_reports") else {}
        data = {}
        for split, name in (("train", "train"), ("eval", "eval")):
            if reports.get(split) is not None or name in self.tokenization_reports:
                data[split] = {"adapter": reports.get(split), "tokenization": self.tokenization_reports.get(name)}
        return build_run_record(
            self.aligntune_config,
            backend_details={
                "reference_free": self.reference_free,
                "reference_model": None if self.reference_free else resolved_path(self.aligntune_config.model_name),
                "global_step": self.state.global_step,
                "run": {
                    "stop_reason": self._run.stop_reason,
                    "model_saved": model_saved,
                    "output_dir": str(Path(self.args.output_dir).resolve()),
                    "resumed_from": self._run.resumed_from,
                    "steps_run": self.state.global_step - self._run.initial_step,
                    "max_steps": self.state.max_steps,
                    "nonfinite_steps_skipped": self._guard.skipped_total,
                    "on_nonfinite": self.aligntune_config.on_nonfinite,
                    "fingerprint": self._fingerprint["digest"] if self._fingerprint else None,
                },
                "data": data,
                "train_metrics": {
                    "whole_run": {key.removeprefix("whole_run/"): value for key, value in summary.items()
                                  if key.startswith("whole_run/")} or self._run.whole_run(),
                    "last_window": {key.removeprefix("last_window/"): value for key, value in summary.items()
                                    if key.startswith("last_window/")},
                    "this_session": {key: value for key, value in summary.items()
                                     if not key.startswith(("whole_run/", "last_window/"))},
                },
            },
        )
