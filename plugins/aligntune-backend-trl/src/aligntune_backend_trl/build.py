"""From a resolved `TrainConfig` to an `AlignTuneDPOTrainer`: data, tokenizer, TRL arguments, LoRA."""

from __future__ import annotations

import dataclasses
from typing import Any

import structlog
from aligntune.core.config import TrainConfig
from aligntune.core.model_paths import check_model_dir
from aligntune.core.precision import resolve_precision
from aligntune.data import load_preference_data
from aligntune.data.mixture import load_mixture
from aligntune.errors import ConfigError, did_you_mean
from aligntune.launch import running_kind
from aligntune.logging_setup import adopt_library_logging
from aligntune.losses import resolve_loss

from aligntune_backend_trl.layout import check_model_attention, choose_layout, requested_attention
from aligntune_backend_trl.trl_options import check_training_arg

log = structlog.get_logger("aligntune.backend.trl")

# Options aligntune sets itself; `training_args` may not override them (use the aligntune option instead).
_MANAGED = {
    "output_dir": "output_dir",
    "num_train_epochs": "num_epochs",
    "per_device_train_batch_size": "batch_size",
    "learning_rate": "learning_rate",
    "beta": "beta",
    "max_length": "max_seq_length",
    "max_steps": "max_steps",
    "gradient_accumulation_steps": "gradient_accumulation_steps",
    "seed": "seed",
    "logging_steps": "logging_steps",
    "save_steps": "save_steps",
    "report_to": "report_to",
    "precompute_ref_log_probs": "precompute_ref_log_probs",
    "loss_type": "loss_type",
    "loss_weights": "loss_weights",
    "label_smoothing": "label_smoothing",
    "resume_from_checkpoint": "resume_from_checkpoint",
    "overwrite_output_dir": "overwrite_output_dir",
    "logging_nan_inf_filter": "on_nonfinite",
}


def make_dpo_config(config: TrainConfig, *, precompute_ref_log_probs: bool):
    import torch
    from trl import DPOConfig

    kwargs: dict[str, Any] = {
        "output_dir": config.output_dir,
        "num_train_epochs": config.num_epochs,
        "per_device_train_batch_size": config.batch_size,
        "per_device_eval_batch_size": config.batch_size,
        "learning_rate": config.learning_rate,
        "beta": config.beta,
        "max_length": config.max_seq_length,
        "max_steps": config.max_steps if config.max_steps is not None else -1,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "seed": config.seed,
        "logging_steps": config.logging_steps,
        "report_to": config.report_to or "none",
        "precompute_ref_log_probs": precompute_ref_log_probs,
    }
    if not torch.cuda.is_available():
        kwargs["use_cpu"] = True  # TRL's defaults refuse to start without a GPU otherwise
    if config.log_format == "json":  # no progress bar; the metrics are logged as JSON lines instead (JsonMetricsLog)
        kwargs["disable_tqdm"] = True
    if config.save_steps is None:
        kwargs["save_strategy"] = "no"
    else:
        kwargs["save_steps"] = config.save_steps
    if config.eval_enabled:
        kwargs["eval_strategy"] = "epoch"
    precision = resolve_precision(config.precision)
    kwargs.update(bf16=precision.mode == "bf16", fp16=precision.mode == "fp16")
    if config.precision == "auto":
        log.info("precision", mode=precision.mode, reason=precision.reason)
    fields = {f.name: f for f in dataclasses.fields(DPOConfig)}
    checkpointing = config.gradient_checkpointing
    if checkpointing is None:  # TRL's default
        checkpointing = fields["gradient_checkpointing"].default
    # transformers 5.2x renamed it activation_checkpointing (the old name warns); older releases only know the old one.
    kwargs["activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"] = checkpointing
    for key, value in config.training_args.items():
        if key in _MANAGED:
            raise ConfigError(f"training_args.{key}: set it with the aligntune option {_MANAGED[key]!r} instead")
        # A DPOConfig field only TRL's replaced code reads is an option here, or refused: never silently ignored.
        check_training_arg(key, value, fields[key].default if key in fields else None)
        if key not in fields:
            raise ConfigError(f"training_args.{key}: not a TRL DPOConfig field.{did_you_mean(key, fields)}")
        kwargs[key] = value
    if kwargs.get("activation_offloading") and _no_accelerator(torch):
        # TRL's offloading moves activations from an accelerator to CPU memory; without one it fails on an attribute.
        raise ConfigError("training_args.activation_offloading: there is no accelerator (GPU) on this machine to "
                          "offload activations from; remove it here (gradient_checkpointing saves memory on a CPU)")
    try:
        return DPOConfig(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"the trainer settings were rejected by TRL's DPOConfig: {exc}") from None


def _no_accelerator(torch) -> bool:
    accelerator = getattr(torch, "accelerator", None)
    return not torch.cuda.is_available() if accelerator is None else accelerator.current_accelerator() is None


def _set_pad_token(tokenizer, pad_token: str) -> None:
    if pad_token not in tokenizer.get_vocab():
        raise ConfigError(f"training_args.pad_token={pad_token!r} is not a token of the tokenizer's vocabulary; give "
                          f"one of its tokens (e.g. its EOS token {tokenizer.eos_token!r}) or leave it unset")
    tokenizer.pad_token = pad_token


def load_tokenizer(model_name: str):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_name)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load the tokenizer of model_name={model_name!r}: {exc}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def make_lora_config(config: TrainConfig):
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.lora_target_modules,
        task_type="CAUSAL_LM",
    )


def load_datasets(config: TrainConfig):
    common = dict(
        data_files=config.data_files,
        dataset_config=config.dataset_config,
        max_samples=config.max_samples,
        strict=config.strict_data,
        dataset_adapter=config.dataset_adapter,
        column_mapping=config.column_mapping,
        processing_fn=config.processing_fn,
        processing_batched=config.processing_batched,
        processing_fn_kwargs=config.processing_fn_kwargs,
        system_prompt=config.system_prompt,
        **config.dataset_options,
    )
    if config.datasets is not None:  # a mixture: each entry through its adapter, with the run's shared options
        shared = {key: common[key] for key in ("strict", "processing_fn", "processing_batched", "processing_fn_kwargs",
                                                "system_prompt")}
        train = load_mixture(config.datasets, seed=config.seed,
                             load=lambda name, **entry: load_preference_data(name, **entry, **shared))
    else:
        train = load_preference_data(config.dataset_name, split=config.split, streaming=config.streaming, **common)
    evaluation = None
    if config.eval_enabled:
        eval_name = config.eval_dataset_name or config.dataset_name
        eval_common = dict(common)
        if config.eval_dataset_name is not None:
            eval_common.update(data_files=None, dataset_config=None)
        evaluation = load_preference_data(eval_name, split=config.eval_split or "test", **eval_common)
        if not config.streaming and len(evaluation.dataset) == len(train.dataset) and \
                evaluation.dataset[:3] == train.dataset[:3]:
            log.warning(
                "the evaluation data is the same as the training data (the source has no separate split "
                f"{config.eval_split or 'test'!r}); eval metrics will not measure generalisation",
                hint="give data_files={train: ..., test: ...}, a directory with train/test files, or eval_dataset_name",
            )
    return train, evaluation


def _check_chat_template(dataset, tokenizer, model_name: str) -> None:
    first = next(iter(dataset), None)  # a stream is peeked at, not read
    if first is not None and isinstance(first["prompt"], list) and getattr(tokenizer, "chat_template", None) is None:
        raise ConfigError(
            f"the dataset is conversational (lists of messages) but the tokenizer of {model_name!r} has no chat "
            "template. Use a chat model, give one with chat_template: (the Jinja text), or give the data as plain "
            "strings (system_prompt turns plain rows into conversations, so it needs a chat template too)."
        )


def _quantization_config(config: TrainConfig):
    """QLoRA through bitsandbytes, only where a CUDA GPU makes it possible."""
    if not config.load_in_4bit:
        return None
    import torch

    if not torch.cuda.is_available():
        raise ConfigError("load_in_4bit=true needs a CUDA GPU (bitsandbytes); this machine has none")
    if not config.use_lora:
        raise ConfigError("load_in_4bit=true trains a LoRA adapter on the 4-bit model (QLoRA): set use_lora=true")
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.float16 if config.precision == "fp16" else torch.bfloat16)


def resolve_precompute(config: TrainConfig) -> tuple[bool, str]:
    """`precompute_ref_log_probs` when left unset: on, except where the reference cannot be fixed up front.
    Measured (benchmarks/dpo_speed.py, docs/performance.md): one reference pass before training is as fast as a
    reference forward per step for one epoch and faster for more (and from the disk cache), and no reference copy
    stays in memory."""
    if config.precompute_ref_log_probs is not None:
        return config.precompute_ref_log_probs, "set in the config"
    if config.streaming:
        return False, "streaming: there is no pass over the data before training"
    if config.training_args.get("sync_ref_model"):
        return False, "sync_ref_model updates the reference during training"
    if config.training_args.get("deepspeed") or running_kind() == "deepspeed":
        return False, "DeepSpeed: the reference runs alongside the policy each step, sharded like it"
    return True, "default: measured faster or equal, and no reference copy in memory"


def trl_precompute_flag(config: TrainConfig, reference_free: bool) -> bool:
    """The value of TRL's `precompute_ref_log_probs`. TRL has no "no reference" switch: it loads a reference copy
    unless the model is a PEFT model or log-probs are precomputed. So a reference-free run sets this flag only to
    keep TRL from loading that copy; `AlignTuneDPOTrainer` then precomputes nothing (its
    `_precompute_ref_logps` returns the data unchanged when `reference_free`)."""
    return config.precompute_ref_log_probs or reference_free


def build_trainer(config: TrainConfig, *, model: Any = None, tokenizer: Any = None, trainer_class: type | None = None,
                  prefix_sharing_default: bool = True):
    """Build the trainer. `model`/`tokenizer` may be given already loaded (other backends reuse this)."""
    import attrs
    import torch

    from aligntune_backend_trl.trainer import AlignTuneDPOTrainer

    from aligntune.core.backend_factory import resolve_log_format

    config = resolve_log_format(config)  # called directly (not through create_rl_trainer): the active mode
    adopt_library_logging()  # JSON-lines logs: transformers' and datasets' own output through them too
    if config.use_lora is None:
        config = attrs.evolve(config, use_lora=False)  # the TRL backend's default: full fine-tuning
    if config.output_dir is None:  # called directly rather than through create_rl_trainer
        from aligntune.runs import prepare_run_config

        config = prepare_run_config(config, check_contents=False)

    loss = resolve_loss(config.loss_type, beta=config.beta, label_smoothing=config.label_smoothing,
                        params=config.loss_params, weights=config.loss_weights)
    reference_free = config.reference_free or not loss.requires_reference
    precompute, precompute_reason = resolve_precompute(config)
    config = attrs.evolve(config, precompute_ref_log_probs=precompute)  # the record holds the value used
    if model is None:
        check_model_dir(config.model_name, option="model_name", need_tokenizer=tokenizer is None)
    train, evaluation = load_datasets(config)
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(config.model_name)
    if config.chat_template is not None:
        tokenizer.chat_template = config.chat_template  # saved with the model's tokenizer, so evaluation uses it
        log.info("chat_template set on the tokenizer from the config")
    _check_chat_template(train.dataset, tokenizer, config.model_name)
    args = make_dpo_config(config, precompute_ref_log_probs=trl_precompute_flag(config, reference_free))
    layout = choose_layout(config, cuda=torch.cuda.is_available(), sharing_default=prefix_sharing_default,
                           model_loaded=model is not None)
    if layout.attn_implementation is not None and requested_attention(config) is None:
        args.model_init_kwargs = {**(args.model_init_kwargs or {}), "attn_implementation": layout.attn_implementation}
    # A model handed over already loaded (another backend) carries its own adapter.
    peft_config = make_lora_config(config) if config.use_lora and model is None else None
    quantization = _quantization_config(config) if model is None else None
    if args.pad_token is not None:
        # TRL applies `pad_token` only to a collator it builds itself: set it here, before aligntune's is built.
        _set_pad_token(tokenizer, args.pad_token)
    collator = None
    if layout.prefix_sharing or layout.packing:
        from aligntune.modeling import SharedPreferenceCollator

        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        collator = SharedPreferenceCollator(
            pad_token_id=tokenizer.pad_token_id, max_length=config.max_seq_length, pack=layout.packing,
            row_tokens=None if layout.row_tokens_unbounded else config.max_seq_length, share=layout.prefix_sharing,
            pad_to_multiple_of=args.pad_to_multiple_of)
    cls = trainer_class or AlignTuneDPOTrainer
    try:
        trainer = cls(
            model=model if model is not None else config.model_name,
            args=args,
            data_collator=collator,
            train_dataset=train.dataset,
            eval_dataset=evaluation.dataset if evaluation is not None else None,
            processing_class=tokenizer,
            peft_config=peft_config,
            quantization_config=quantization,
            aligntune_config=config,
            loss=loss,
            reference_free=reference_free,
        )
    except OSError as exc:
        raise ConfigError(f"cannot load model_name={config.model_name!r}: {exc}") from None
    if config.log_format == "json":
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        from aligntune_backend_trl.lifecycle import JsonMetricsLog

        for callback in (PrinterCallback, ProgressCallback):  # both print Python dicts to stdout
            trainer.remove_callback(callback)
        trainer.add_callback(JsonMetricsLog())
    trainer.data_reports = {"train": train.report, "eval": evaluation.report if evaluation else None}
    trainer.data_sources = {"train": train, "eval": evaluation}
    check_model_attention(layout, trainer.accelerator.unwrap_model(trainer.model))
    trainer.layout = layout
    log.info(
        "trainer ready",
        train_pairs="streamed" if config.streaming else len(trainer.train_dataset),
        layout=layout.description,
        layout_reason=layout.reason,
        reference_reason=None if reference_free else precompute_reason,
        reference="none (reference-free)" if reference_free else "precomputed before training" if precompute else
        ("base model with adapter disabled" if config.use_lora else "separate copy"),
    )
    return trainer
