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
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import structlog
import torch
from aligntune.core.config import TrainConfig
from aligntune.data.length_report import LengthCounter, announce, tokenization_report
from aligntune.launch import check_sharding
from aligntune.losses import ResolvedLoss
from aligntune.modeling import SHARED_KEY, CompletionLogps, pair_weights, preference_logps, ref_cache, split_pairs
from aligntune.modeling.tokenize import common_prefix_length
from datasets import IterableDataset
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from trl import DPOTrainer

from aligntune_backend_trl.conveniences import TrainerConveniences
from aligntune_backend_trl.lifecycle import RunLifecycleMixin, StopOnSignal

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


def tokenize_plain_pairs(dataset, tokenizer, dataset_name: str, num_proc: int | None = None):
    """TRL's tokenization of plain-text pairs (EOS appended to each response, the completion starting where prompt
    and prompt+response token lists diverge), done with batched calls to the fast tokenizer; in `num_proc`
    processes when given (TRL's `dataset_num_proc`)."""
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
            start = min(common_prefix_length(p_ids, c_ids), common_prefix_length(p_ids, r_ids))
            out["prompt_ids"].append(p_ids[:start])
            out["chosen_ids"].append(c_ids[start:])
            out["rejected_ids"].append(r_ids[start:])
        return out

    return dataset.map(tokenize, batched=True, batch_size=1000, num_proc=num_proc,
                       desc=f"Tokenizing {dataset_name} dataset")


def _has_reference_columns(dataset) -> bool:
    names = getattr(dataset, "column_names", None)
    if isinstance(names, dict):  # a DatasetDict
        return all("ref_chosen_logps" in columns for columns in names.values())
    return bool(names) and "ref_chosen_logps" in names


def _untruncated(args):
    """A copy of the trainer arguments with no `max_length`, for TRL's tokenization: pairs are tokenized whole, then
    counted, cut and dropped by aligntune (TRL would drop pairs whose prompt fills `max_length` without a word).
    The trainer's own `args` are never changed."""
    import copy

    copied = copy.copy(args)
    copied.max_length = None
    return copied


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


class AlignTuneDPOTrainer(TrainerConveniences, RunLifecycleMixin, DPOTrainer):
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
        self._head_layout = ""  # logged when it is first known, and when it changes
        self.ref_cache_hits = 0
        self._init_lifecycle(aligntune_config)
        super().__init__(*args, **kwargs)
        if self.reference_free:
            # TRL was told to "precompute" only so that it loads no reference model; nothing is precomputed.
            self.precompute_ref_logps = False
        self.add_callback(StopOnSignal(self))

    def create_accelerator_and_postprocess(self):
        super().create_accelerator_and_postprocess()
        # Before any model work: the sharding accelerate set up is the one the run was launched for.
        check_sharding(self.accelerator.distributed_type.value)

    # -- data ------------------------------------------------------------------------------------------------------

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        if isinstance(dataset, IterableDataset):
            return self._prepare_stream(dataset, processing_class, args, dataset_name)
        limit = self.aligntune_config.max_prompt_length
        max_length = args.max_length
        processes = {"num_proc": args.dataset_num_proc}  # TRL's `dataset_num_proc`, for aligntune's maps as for TRL's
        if _plain_text_pairs(dataset, processing_class):
            dataset = tokenize_plain_pairs(dataset, processing_class, dataset_name, num_proc=args.dataset_num_proc)
        else:
            dataset = super()._prepare_dataset(dataset, processing_class, _untruncated(args), dataset_name)
        completion_limit = self.aligntune_config.max_completion_length
        report = tokenization_report(
            _pair_lengths(dataset), max_seq_length=max_length, max_prompt_length=limit,
            truncation_mode=args.truncation_mode, max_completion_length=completion_limit,
        )
        self.tokenization_reports[dataset_name] = report
        if args.process_index == 0:
            announce(report, dataset_name)
        if limit is not None:

            def keep_prompt_end(example):
                return {"prompt_ids": example["prompt_ids"][-limit:]}

            dataset = dataset.map(keep_prompt_end, **processes,
                                  desc=f"Truncating prompts of {dataset_name} dataset to {limit} tokens")
        if completion_limit is not None:

            def keep_completion_start(example):
                return {"chosen_ids": example["chosen_ids"][:completion_limit],
                        "rejected_ids": example["rejected_ids"][:completion_limit]}

            dataset = dataset.map(keep_completion_start, desc=f"Truncating completions of {dataset_name} dataset to "
                                                              f"{completion_limit} tokens", **processes)
        if report["dropped"]:
            # A pair whose prompt fills max_length has no completion token left to learn from (counted above).
            dataset = dataset.filter(lambda example: len(example["prompt_ids"]) < max_length,
                                     desc=f"Dropping fully truncated examples from {dataset_name} dataset", **processes)
        return dataset

    def _prepare_stream(self, dataset, processing_class, args, dataset_name):
        """A stream is tokenized (by TRL) and counted as training reads it; the counts reach the log and the run
        record when training ends."""
        limit = self.aligntune_config.max_prompt_length
        max_length = args.max_length
        dataset = super()._prepare_dataset(dataset, processing_class, _untruncated(args), dataset_name)
        completion_limit = self.aligntune_config.max_completion_length
        counter = LengthCounter(max_seq_length=max_length, max_prompt_length=limit,
                                truncation_mode=args.truncation_mode, max_completion_length=completion_limit)
        self._length_counters[dataset_name] = counter

        def count_and_cut(example):
            keep = counter.add(len(example["prompt_ids"]), len(example["chosen_ids"]), len(example["rejected_ids"]))
            if limit is not None:
                example["prompt_ids"] = example["prompt_ids"][-limit:]
            if completion_limit is not None:
                example["chosen_ids"] = example["chosen_ids"][:completion_limit]
                example["rejected_ids"] = example["rejected_ids"][:completion_limit]
            example["aligntune_keep"] = keep
            return example

        dataset = dataset.map(count_and_cut)
        return dataset.filter(lambda example: example["aligntune_keep"]).remove_columns("aligntune_keep")

    # -- reference -------------------------------------------------------------------------------------------------

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
        """Trainer's `evaluate`. A new dataset after training, with full fine-tuning and reference log-probs
        precomputed before training, has no reference in memory to score it against (the policy has moved): a
        copy of the starting model is loaded for it, once (TRL would refuse)."""
        if eval_dataset is not None and not isinstance(eval_dataset, str) and _has_reference_columns(eval_dataset):
            # Tokenized and scored by the reference already (e.g. trainer.train_dataset): nothing for TRL to prepare.
            from transformers import Trainer

            return Trainer.evaluate(self, eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)
        new_data = eval_dataset is not None and not isinstance(eval_dataset, str)
        if new_data and self.precompute_ref_logps and not self.reference_free and self.ref_model is None and \
                not _is_peft_model(self.accelerator.unwrap_model(self.model)) and self.state.global_step > 0:
            self._load_reference_copy()
        return super().evaluate(eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)

    def _load_reference_copy(self) -> None:
        from trl.trainer.utils import disable_dropout_in_model

        from aligntune.core.model_paths import resolved_path

        policy = self.accelerator.unwrap_model(self.model)
        source = resolved_path(self.aligntune_config.model_name)
        _log.info("loading a copy of the starting model as the reference, to score the data passed to evaluate()",
                  model=source, hint="reference log-probs were precomputed before training and not kept in memory")
        init = dict(self.args.model_init_kwargs or {})
        init.setdefault("trust_remote_code", self.args.trust_remote_code)  # as TRL loads the policy
        init.update(dtype=policy.dtype, attn_implementation=policy.config._attn_implementation)
        reference = type(policy).from_pretrained(source, **init)
        disable_dropout_in_model(reference)
        self.ref_model = self.accelerator.prepare_model(reference, evaluation_mode=True)

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

    def reference_logps(self, inputs: dict[str, torch.Tensor], engine: Any = None) -> CompletionLogps:
        """Reference log-probs of one batch, without gradients (through `engine` when one wraps the reference)."""
        model, context = self._reference_context()
        model = engine if engine is not None else model
        self.reference_forward_calls += 1
        with torch.no_grad(), context:
            # LD-DPO desensitises the reference's sums too (TRL's `compute_ref_log_probs` does).
            return preference_logps(model, inputs, chunk_size=self.aligntune_config.logps_chunk_size,
                                    ld_alpha=self.aligntune_config.ld_alpha)

    def _ref_cache_key(self, dataset) -> str:
        model, _ = self._reference_context()
        settings = {
            "max_length": self.args.max_length,
            "precision": self.aligntune_config.precision,
            "bf16": bool(self.args.bf16),
            "fp16": bool(self.args.fp16),
            "dtype": str(next(model.parameters()).dtype),
        }
        if self.aligntune_config.ld_alpha is not None:
            # Other sums: an entry written without ld_alpha (or with another) must never be read for this run. Only
            # set when used, so the keys of entries written before the option existed stay what they were.
            settings["ld_alpha"] = self.aligntune_config.ld_alpha
        return ref_cache.cache_key(model=ref_cache.model_fingerprint(self.accelerator.unwrap_model(model)),
                                   data=ref_cache.data_fingerprint(dataset), settings=settings)

    def _precompute_ref_logps(self, dataset, name, batch_size):
        if self.reference_free or _has_reference_columns(dataset):  # nothing to do, or already done (idempotent)
            return dataset
        config = self.aligntune_config
        cache_dir = Path(config.ref_logps_cache_dir) if config.ref_logps_cache_dir else ref_cache.default_cache_dir()
        key = self._ref_cache_key(dataset) if config.ref_logps_cache else None
        if key is not None:
            cached = ref_cache.load(cache_dir, key)
            if cached is not None and len(cached[0]) != len(dataset):
                cached = None
            if not self._all_processes_agree(cached is not None):
                # Several processes compute the columns together (each its share, then gathered): all of them
                # read the cache, or none does (a node whose disk lacks the entry would otherwise wait forever).
                cached = None
            if cached is not None:
                self.ref_cache_hits += 1
                _log.info("reference log-probs read from the cache", dataset=name, path=str(cache_dir / f"{key}.pt"))
                dataset = dataset.add_column("ref_chosen_logps", cached[0])
                return dataset.add_column("ref_rejected_logps", cached[1])
        chosen, rejected = self._compute_reference_columns(dataset, name, batch_size)
        if key is not None and self.accelerator.is_main_process:
            try:
                path = ref_cache.save(cache_dir, key, chosen, rejected,
                                      {"model": config.model_name, "split": name,
                                       "dataset": config.dataset_name or [entry["name"] for entry in config.datasets],
                                       "pairs": len(dataset)})
            except OSError as exc:  # a cache that cannot be written costs a recompute next time, not this run
                _log.warning("reference log-probs not cached: the cache cannot be written", dataset=name,
                             directory=str(cache_dir), reason=exc.strerror or str(exc),
                             hint="set ref_logps_cache_dir to a writable directory, or ref_logps_cache: false")
            else:
                _log.info("reference log-probs cached", dataset=name, path=str(path))
        dataset = dataset.add_column("ref_chosen_logps", chosen.tolist())
        return dataset.add_column("ref_rejected_logps", rejected.tolist())

    def _all_processes_agree(self, value: bool) -> bool:
        """True where `value` is true in every process of the run."""
        if self.accelerator.num_processes == 1:
            return value
        flag = torch.tensor([1 if value else 0], device=self.accelerator.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
        return bool(flag.item())

    def _compute_reference_columns(self, dataset, name, batch_size):
        loader = self.accelerator.prepare(
            DataLoader(dataset, batch_size=batch_size, collate_fn=self.data_collator, shuffle=False)
        )
        chosen, rejected = [], []
        engine = None
        if self.ref_model is None and self.is_deepspeed_enabled:
            # Before `train()` prepares it, a ZeRO-3 policy's parameters are partitioned across processes: run the
            # reference pass through a DeepSpeed inference engine that gathers them (as TRL does), built once.
            if getattr(self, "_reference_engine", None) is None:
                from trl.models import prepare_deepspeed

                self._reference_engine = prepare_deepspeed(self.model, self.accelerator)
            engine = self._reference_engine
        for batch in tqdm(loader, desc=f"Reference log-probs ({name})",
                          disable=not self.is_local_process_zero() or self.aligntune_config.log_format == "json"):
            with self.accelerator.autocast():
                ref = self.reference_logps(batch, engine)
            ref_chosen, ref_rejected = split_pairs(ref.logps)
            ref_chosen, ref_rejected = self.accelerator.gather_for_metrics((ref_chosen, ref_rejected))
            chosen.append(ref_chosen.float().cpu())
            rejected.append(ref_rejected.float().cpu())
        return torch.cat(chosen), torch.cat(rejected)

    # -- loss ------------------------------------------------------------------------------------------------------

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        # TRL set aux_loss_enabled / router_aux_loss_coef from the model's config (mixture-of-experts models).
        config = self.aligntune_config
        policy = preference_logps(model, inputs, chunk_size=config.logps_chunk_size,
                                  router_logits=self.aux_loss_enabled, ld_alpha=config.ld_alpha,
                                  wpo=config.use_weighting)
        if policy.head_layout != self._head_layout:
            self._head_layout = policy.head_layout
            if self.args.process_index == 0:
                _log.info("LM head layout", layout=policy.head_layout)
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
            pair_weights=pair_weights(policy) if config.use_weighting else None,
            policy_chosen_plain_logps=None if policy.plain_logps is None else split_pairs(policy.plain_logps)[0],
        )
        loss = out.losses.mean()
        if self.aux_loss_enabled:  # as TRL: the router load-balancing loss of the policy forward, weighted
            loss = loss + self.router_aux_loss_coef * policy.aux_loss
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
        # TRL's `entropy`: mean next-token entropy over every completion token (chosen and rejected), across ranks.
        entropy_sum = gather(policy.entropy_sum.sum().reshape(1)).sum()
        completion_tokens = gather(policy.lengths.sum().reshape(1)).sum()
        metrics["entropy"].append((entropy_sum / completion_tokens.clamp(min=1)).item())
        if self.aux_loss_enabled and policy.aux_loss is not None:
            metrics["aux_loss"].append(gather(policy.aux_loss.detach().reshape(1)).mean().item())
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
                logs.update(self._window_loss_fields())
        super().log(logs, start_time)

    @property
    def log_history(self) -> list[dict[str, float]]:
        """Every logged record (TRL's metric names: loss, rewards/*, logps/*, ...)."""
        return self.state.log_history
