"""AlignTune 0.x and TRL shapes, values and names that are not simply another name for one of our options.

A name with the same meaning (TRL's `model_name_or_path`, `num_train_epochs`, AlignTune 0.x's `use_peft`, ...) is
declared as an alias on its `TrainConfig` field (`aligntune.core.options`). What is left here: TRL's trainer
settings routed into `training_args` (`TRAINING_ARGS`) and model loading settings into its `model_init_kwargs`
(`MODEL_INIT`), names refused with what to write instead (`REFUSED`) or ignored as in AlignTune 0.x (`NOT_DPO`),
AlignTune 0.x's nested YAML layout (`algo`, `model`, `datasets`, `train`, `logging`), its `lora_config` and
`quantization` mappings, and special values (`backend="auto"`, `max_steps=-1`, `algorithm="DPO"`, TRL's
`rpo_alpha`). `translate_options` turns all of it into `TrainConfig` options; docs/migrating.md and
docs/migrating-from-trl.md list every name. The rest of aligntune never sees the old names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import structlog

from aligntune.core.options import InvalidValueError, rename_aliases
from aligntune.errors import ConfigError

log = structlog.get_logger("aligntune.compat")

# Names with the same meaning as one of our options are not here: they are declared on the TrainConfig field
# (`metadata=aliases(...)`, aligntune.core.options).
# Trainer settings: TRL DPOConfig / transformers TrainingArguments fields (their name -> the field).
TRAINING_ARGS = {
    "warmup_steps": "warmup_steps",
    "warmup_ratio": "warmup_steps",  # transformers 5 reads a warmup_steps below 1 as a fraction of the steps
    "weight_decay": "weight_decay",
    "max_grad_norm": "max_grad_norm",
    "lr_scheduler": "lr_scheduler_type",
    "lr_scheduler_type": "lr_scheduler_type",
    "optimizer": "optim",
    "optim": "optim",
    "eval_steps": "eval_steps",
    "eval_interval": "eval_steps",
    "eval_strategy": "eval_strategy",
    "save_strategy": "save_strategy",
    "save_total_limit": "save_total_limit",
    "logging_strategy": "logging_strategy",
    "dataloader_num_workers": "dataloader_num_workers",
    "data_seed": "data_seed",
    "truncation_mode": "truncation_mode",
    "sync_ref_model": "sync_ref_model",
    "ref_model_mixup_alpha": "ref_model_mixup_alpha",
    "ref_model_sync_steps": "ref_model_sync_steps",
    "precompute_ref_batch_size": "precompute_ref_batch_size",
    "run_name": "run_name",
    "use_liger_kernel": "use_liger_kernel",
    "load_best_model_at_end": "load_best_model_at_end",
    "metric_for_best_model": "metric_for_best_model",
    "greater_is_better": "greater_is_better",
    "eval_batch_size": "per_device_eval_batch_size",
    "per_device_eval_batch_size": "per_device_eval_batch_size",
    "disable_dropout": "disable_dropout",
    "dataset_num_proc": "dataset_num_proc",
    "pad_token": "pad_token",
    "push_to_hub": "push_to_hub",
    "hub_model_id": "hub_model_id",
    "hub_private_repo": "hub_private_repo",
    "hub_strategy": "hub_strategy",
    "lr_scheduler_kwargs": "lr_scheduler_kwargs",
    "adam_beta1": "adam_beta1",
    "adam_beta2": "adam_beta2",
    "adam_epsilon": "adam_epsilon",
    "logging_first_step": "logging_first_step",
    "bf16_full_eval": "bf16_full_eval",
    "tf32": "tf32",
    "torch_compile": "torch_compile",
    "ddp_find_unused_parameters": "ddp_find_unused_parameters",
    "gradient_checkpointing_kwargs": "gradient_checkpointing_kwargs",
}
# `ld_alpha` and `use_weighting` (TRL DPOConfig fields) are aligntune options of the same name and meaning:
# aligntune's loss path computes them (TRL's own code for them never runs here).
# Loss parameters (aligntune's losses read them from loss_params).
LOSS_PARAMS = {"discopop_tau": "discopop_tau"}
# Model loading settings: passed to `from_pretrained` through TRL's model_init_kwargs.
MODEL_INIT = {"trust_remote_code": "trust_remote_code", "device_map": "device_map",
              # TRL's ModelConfig
              "dtype": "dtype", "torch_dtype": "dtype", "attn_implementation": "attn_implementation",
              "model_revision": "revision"}
# Names that exist in AlignTune 0.x but have no DPO meaning here, or are not supported: what to do instead.
REFUSED = {
    "field_mappings": "use column_mapping={your column: prompt | chosen | rejected}",
    "val_split_ratio": "give held-out data: eval_dataset_name, or data_files={train: ..., test: ...} with eval_split",
    "max_eval_samples": "max_samples applies to both the training and the evaluation data",
    "percent": "use max_samples (a number of pairs)",
    "quantization_config": "use load_in_4bit: true (QLoRA with nf4 and double quantisation)",
    "f_divergence_type": "f-divergence DPO is not among aligntune's losses; choose a loss_type (aligntune plugins "
                         "list) or add one as a loss plugin (docs/plugins/writing-a-loss.md)",
    "f_alpha_divergence_coef": "f-divergence DPO is not among aligntune's losses; choose a loss_type",
    "use_liger_loss": "aligntune computes the loss itself (prefix-shared log-probs); use_liger_kernel still applies",
    "ref_model_init_kwargs": "the reference is the model itself (or its base under LoRA): it loads like model_name",
    "force_use_ref_model": "with LoRA the reference is the base with the adapter disabled; for a separate "
                           "reference copy, train without LoRA",
    "model_adapter_name": "aligntune trains one LoRA adapter per run; load a model with an adapter merged instead",
    "ref_adapter_name": "aligntune trains one LoRA adapter per run; load a model with an adapter merged instead",
    "use_logits_to_keep": "aligntune already computes log-probs on completion tokens only",
    "label_pad_token_id": "aligntune masks padding itself; nothing to set",
    "dataset_weight": "give a mixture: datasets: [{name: ..., weight: 0.5}, ...] (docs/datasets.md, mixtures)",
    "tools": "give tool messages in conversational prompts ({role: tool})",
    "preserve_columns": "extra columns are ignored; prompt/chosen/rejected are what is trained on",
    "dpo_eval_enabled": "evaluate after training with aligntune eval / run_eval (docs/evaluation.md)",
    "generate_during_eval": "TRL 1.16 has no such option any more; aligntune evaluates generations after training: "
                            "`aligntune eval <output_dir>` or run_eval(EvalConfig(...)) with a judged win rate "
                            "(docs/evaluation.md)",
    "dpo_eval_max_samples": "evaluate after training with run_eval(EvalConfig(max_samples=...))",
    # TRL ModelConfig options aligntune does not offer
    "use_rslora": "rank-stabilised LoRA is not offered; use lora_r / lora_alpha",
    "use_dora": "DoRA is not offered; use LoRA (use_lora: true)",
    "lora_modules_to_save": "extra trainable modules are not offered with LoRA here; train without LoRA to train them",
    "load_in_8bit": "8-bit loading is not offered; use load_in_4bit: true (QLoRA)",
    "bnb_4bit_quant_type": "aligntune's 4-bit loading is nf4 with double quantisation (load_in_4bit: true)",
    "use_bnb_nested_quant": "aligntune's 4-bit loading always uses double quantisation (load_in_4bit: true)",
    "dataset_mixture": "use datasets: [{name, split, weight}, ...] (docs/datasets.md, mixtures)",
}
# Where a refused name comes from, for the message (the rest are AlignTune 0.x's).
_OLDER_TRL = "TRL DPOConfig, before 1.x"
REFUSED_ORIGIN = {
    "f_divergence_type": "TRL DPOConfig", "f_alpha_divergence_coef": "TRL DPOConfig",
    **{key: _OLDER_TRL for key in ("use_liger_loss", "ref_model_init_kwargs", "force_use_ref_model",
                                   "model_adapter_name", "ref_adapter_name", "use_logits_to_keep",
                                   "label_pad_token_id", "tools", "generate_during_eval")},
    **{key: "TRL ModelConfig" for key in ("use_rslora", "use_dora", "lora_modules_to_save", "load_in_8bit",
                                          "bnb_4bit_quant_type", "use_bnb_nested_quant")},
    "dataset_mixture": "TRL script arguments",
    "quantization_config": "AlignTune 0.x, transformers",
}
# AlignTune 0.x options of its PPO/GRPO trainers (and its own loggers): its DPO trainer ignored them, so they are
# ignored here too — with a warning that names them.
NOT_DPO = frozenset({
    "loggers", "caching_enabled", "cache_dir", "enable_sample_logging", "sample_logging_prompts",
    "reward_value_model", "reward_model_name", "reward_model_path", "train_custom_reward_model",
    "reward_training_texts", "reward_functions", "reward_function_weights", "reward_training_base_model",
    "reward_training_output_dir", "reward_value_loading_type", "reward_model_quantization",
    "value_model_quantization", "reward_training", "reward_device", "kl_coef", "num_generations", "cliprange",
    "cliprange_value", "vf_coef", "gamma", "lam", "whiten_rewards", "response_length", "rollout_batch_size",
    "num_ppo_epochs", "temperature", "top_p", "kl_estimator", "mask_truncated_completions", "rewards",
    "boost_factor", "min_weight", "max_spans", "answer_weight", "gbmpo_divergence_type", "sample_logging",
    "generation_kwargs", "use_cache", "group_by_length", "dpo_zero_shot_max_samples", "dpo_few_shot_max_samples",
    "dpo_few_shot_examples_text",
})
SUPPORTED_ALGORITHMS = ("dpo",)
# Where AlignTune 0.x's or TRL's defaults differ from ours in a way that changes what is trained: said at start-up
# whenever the option is left unset, so a config written for either never trains something else silently.
DIFFERENT_DEFAULTS = {
    "use_lora": "full fine-tuning with the trl backend (AlignTune 0.x: LoRA, use_peft=True)",
    "learning_rate": "1e-6, the DPO guide's default (AlignTune 0.x: 2e-4; TRL: 1e-6)",
    "num_epochs": "1 (AlignTune 0.x: 3)",
    "max_steps": "no cap: every epoch runs (AlignTune 0.x: max_steps=100 silently capped the epochs)",
    "batch_size": "4 per device, the DPO guide's default (TRL: per_device_train_batch_size 8)",
    "max_seq_length": "512 tokens for prompt + completion (TRL: max_length 1024)",
    "precompute_ref_log_probs": "auto: reference log-probs computed once before training where that is possible "
                                "(TRL: false, a reference forward every step; the per-step losses are the same)",
}


@attrs.frozen
class Translation:
    options: dict[str, Any]
    lines: dict[str, int]
    used_old_names: tuple[str, ...]


def _nested_to_flat(config: Mapping[str, Any]) -> dict[str, Any]:
    """AlignTune 0.x's nested layout (`algo`, `model`, `datasets`, `train`, `logging`) as one flat mapping."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if key in ("model", "train", "logging") and isinstance(value, Mapping):
            flat.update(value)
        elif key == "datasets" and isinstance(value, list) and len(value) != 1:
            # Several: a mixture (aligntune.data.mixture), with AlignTune 0.x's entry names mapped.
            renames = {"config_name": "config", "dataset_name": "name"}
            flat["datasets"] = [{renames.get(k, k): v for k, v in entry.items()} if isinstance(entry, Mapping)
                                else entry for entry in value]
        elif key == "datasets" and isinstance(value, list):
            if not isinstance(value[0], Mapping):
                raise ConfigError(f"datasets: each entry is a mapping such as {{name: my_pairs.jsonl}}, got "
                                  f"{value[0]!r}")
            dataset = dict(value[0])
            if "name" in dataset:
                dataset["dataset_name"] = dataset.pop("name")
            flat.update(dataset)
        elif key == "dataset" and isinstance(value, Mapping):
            dataset = dict(value)
            if "name" in dataset:
                dataset["dataset_name"] = dataset.pop("name")
            flat.update(dataset)
        else:
            flat[key] = value
    return flat


def is_nested_config(values: Mapping[str, Any]) -> bool:
    """AlignTune 0.x's nested layout has `model:`/`train:`/`logging:` mappings (a flat `datasets:` list alone is
    aligntune's mixture)."""
    return any(isinstance(values.get(key), Mapping) for key in ("model", "train", "logging"))


def load_config_argument(config: Any) -> dict[str, Any]:
    """`config=`: a YAML path or a mapping, nested (AlignTune 0.x) or flat."""
    from pathlib import Path

    if isinstance(config, (str, Path)):
        from aligntune.core.config_file import load_yaml_options

        values, _ = load_yaml_options(config)
    elif isinstance(config, Mapping):
        values = dict(config)
    else:
        raise ConfigError(f"config: expected a YAML file path or a mapping, got {type(config).__name__}")
    return _nested_to_flat(values) if is_nested_config(values) else values


def translate_options(values: Mapping[str, Any], lines: Mapping[str, int] | None = None, *,
                      source: str | None = None) -> Translation:
    """Map AlignTune 0.x names and values onto `TrainConfig` options (see the module docstring). With `source` (a
    YAML file) and its `lines`, an error names the file and line."""
    try:
        return _translate(values, lines)
    except _KeyError as exc:
        where = f"{source}, line {lines[exc.key]}: " if source and lines and exc.key in lines else \
            (f"{source}: " if source else "")
        raise ConfigError(f"{where}{exc}") from None


class _KeyError(ConfigError):
    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def _translate(values: Mapping[str, Any], lines: Mapping[str, int] | None) -> Translation:
    values = dict(values)
    if "config" in values:
        base = load_config_argument(values.pop("config"))
        values = {**base, **values}  # keywords override the file, as in AlignTune 0.x
    if is_nested_config(values):
        values = _nested_to_flat(values)
    from aligntune.core.config import TrainConfig

    try:  # the fields' declared aliases first: what follows sees our names only
        renamed = rename_aliases(TrainConfig, values, lines)
    except InvalidValueError as exc:
        raise _KeyError(exc.key, exc.detail) from None
    values, lines = renamed.values, renamed.lines
    out: dict[str, Any] = {}
    given_training_args = values.pop("training_args", None)
    if given_training_args is not None and not isinstance(given_training_args, Mapping):
        out["training_args"] = given_training_args  # not a mapping: TrainConfig names the mistake
        given_training_args = None
    training_args = dict(given_training_args or {})
    given_model_init = training_args.get("model_init_kwargs")
    model_init = dict(given_model_init) if isinstance(given_model_init, Mapping) else {}
    old: list[str] = list(renamed.aliases_used)
    for key, name in LOSS_PARAMS.items():  # into a copy of loss_params: the caller's mapping is never changed
        if key in values:
            value = values.pop(key)
            old.append(key)
            params = values.get("loss_params")
            if value is not None and (params is None or isinstance(params, Mapping)):
                values["loss_params"] = {**(params or {}), name: value}
    if "rpo_alpha" in values or "rpo_alpha" in training_args:
        _rpo_alpha(values, training_args, old)
    ignored = sorted(key for key in values if key in NOT_DPO)
    if ignored:
        log.warning("ignored: these AlignTune 0.x options have no effect on DPO (as in AlignTune 0.x); remove them",
                    options=ignored)
    for key, value in values.items():
        try:
            target = _translate_one(key, value, values, out, training_args, model_init, old)
            if target is not None:
                out[target] = _value(target, value)
        except ConfigError as exc:
            raise _KeyError(key, str(exc)) from None
        if target is not None and target != key:
            old.append(key)
            if key in lines:
                lines[target] = lines.pop(key)
    if model_init:
        training_args["model_init_kwargs"] = model_init
    if training_args and "training_args" not in out:
        out["training_args"] = training_args
    return Translation(options=out, lines=lines, used_old_names=tuple(old))


def _rpo_alpha(values: dict[str, Any], training_args: dict[str, Any], old: list[str]) -> None:
    """TRL < 1.0's `rpo_alpha: X` (DPO loss + X · NLL of the chosen responses) is, since TRL 1.0, the loss list
    `[<loss>, "sft"]` with weights `[1.0, X]`: rewritten into `loss_type`/`loss_weights` here, and said so."""
    if "rpo_alpha" in values and "rpo_alpha" in training_args:
        raise _KeyError("rpo_alpha", "rpo_alpha is given both as an option and in training_args; give it once")
    alpha = values.pop("rpo_alpha") if "rpo_alpha" in values else training_args.pop("rpo_alpha")
    old.append("rpo_alpha")
    if alpha is None:  # TRL's default: no NLL term
        return
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not alpha >= 0:
        raise _KeyError("rpo_alpha", f"rpo_alpha must be a number >= 0 (the weight of the chosen responses' NLL), "
                                     f"got {alpha!r}")
    loss_type = values.get("loss_type", "sigmoid")
    names = [loss_type] if isinstance(loss_type, str) else list(loss_type) if isinstance(loss_type, (list, tuple)) \
        else None
    if names is None:
        return  # not a loss name or list: TrainConfig names the mistake in loss_type
    if "sft" in names:
        raise _KeyError("rpo_alpha", f"rpo_alpha adds the 'sft' loss, but loss_type already lists it ({names}); "
                                     "remove rpo_alpha and give sft's weight in loss_weights")
    weights = values.get("loss_weights")
    if weights is None:
        weights = [1.0] * len(names)
    elif not isinstance(weights, (list, tuple)) or len(weights) != len(names):
        raise _KeyError("rpo_alpha", f"rpo_alpha appends a weight for 'sft' to loss_weights, but loss_weights "
                                     f"{weights!r} does not give one weight per loss of {names}; give loss_type: "
                                     f"{[*names, 'sft']} with loss_weights (one per loss) instead of rpo_alpha")
    values["loss_type"] = [*names, "sft"]
    values["loss_weights"] = [*weights, alpha]
    log.info("rpo_alpha is TRL's sft loss: trained as loss_type + sft with rpo_alpha as its weight",
             rpo_alpha=alpha, loss_type=values["loss_type"], loss_weights=values["loss_weights"])


def _translate_one(key: str, value: Any, values: Mapping[str, Any], out: dict[str, Any],
                   training_args: dict[str, Any], model_init: dict[str, Any], old: list[str]) -> str | None:
    """The option `key` becomes (None: handled here, into `out`/`training_args`/`model_init`)."""
    if key in NOT_DPO:
        old.append(key)
        return None
    if key in REFUSED:
        raise ConfigError(f"option {key!r} ({REFUSED_ORIGIN.get(key, 'AlignTune 0.x')}) is not supported: "
                          f"{REFUSED[key]}")
    if key == "model_init_kwargs":
        if not isinstance(value, Mapping):
            raise ConfigError(f"model_init_kwargs: expected a mapping of from_pretrained arguments, got {value!r}")
        model_init.update(value)
    elif key in TRAINING_ARGS:
        if value is not None:
            training_args[TRAINING_ARGS[key]] = value
    elif key in MODEL_INIT:
        if value is not None and not (key == "device_map" and value == "auto"):
            model_init[MODEL_INIT[key]] = value
    elif key == "quantization":
        out.update(_quantization(value))
    elif key == "lora_config":
        out.update(_lora_config(value, values))
    elif key in ("fp16", "bf16"):
        if value:
            out["precision"] = key
    else:
        return key
    old.append(key)
    return None


def _value(key: str, value: Any) -> Any:
    if key == "algorithm" and isinstance(value, str):
        algorithm = value.strip().lower()
        if algorithm not in SUPPORTED_ALGORITHMS:
            raise ConfigError(f"algorithm {value!r}: aligntune trains the DPO family only (losses: see loss_type); "
                              "use algorithm='dpo'")
        return algorithm
    if key == "backend" and isinstance(value, str):
        backend = value.strip().lower()
        if backend == "auto":
            log.info("backend='auto' means 'trl' here (install aligntune-backend-unsloth and set backend='unsloth' "
                     "for Unsloth)")
            return "trl"
        return backend
    if key == "max_steps" and isinstance(value, int) and not isinstance(value, bool) and value in (-1, 0):
        return None  # AlignTune 0.x / TRL: -1 means "no cap" (but `false` is no number of steps: refused)
    if key == "chat_template" and value == "auto":
        return None  # AlignTune 0.x's default: the tokenizer's own template
    return value


# peft.LoraConfig keys of AlignTune 0.x's `lora_config` dict -> our options (their DPO trainers ignored the dict;
# here it means what it says).
LORA_CONFIG = {"r": "lora_r", "lora_r": "lora_r", "lora_alpha": "lora_alpha", "lora_dropout": "lora_dropout",
               "target_modules": "lora_target_modules", "lora_target_modules": "lora_target_modules"}


def _lora_config(value: Any, values: Mapping[str, Any]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"lora_config: expected a mapping such as {{r: 16, lora_alpha: 32}}, got {value!r}")
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key in LORA_CONFIG:
            target = LORA_CONFIG[key]
            if target in values and values[target] != item:
                raise ConfigError(f"lora_config.{key}={item!r} and {target}={values[target]!r} disagree; give one")
            out[target] = item
        elif key == "bias" and item == "none" or key == "task_type" and item == "CAUSAL_LM":
            continue  # what aligntune always trains with
        else:
            raise ConfigError(f"lora_config.{key}={item!r} is not supported: aligntune sets r, lora_alpha, "
                              "lora_dropout and target_modules (bias 'none', task_type 'CAUSAL_LM')")
    if out:
        out.setdefault("use_lora", values.get("use_lora", True))  # `use_peft` is renamed to use_lora by now
    return out


def _quantization(value: Any) -> dict[str, Any]:
    if value in (None, {}):
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"quantization: expected a mapping such as {{load_in_4bit: true}}, got {value!r}")
    unknown = sorted(set(value) - {"load_in_4bit", "bnb_4bit_quant_type", "bnb_4bit_use_double_quant",
                                   "bnb_4bit_compute_dtype"})
    if unknown:
        raise ConfigError(f"quantization: {', '.join(unknown)} not supported; aligntune offers load_in_4bit: true "
                          "(nf4, double quantisation, bf16 compute)")
    if value.get("bnb_4bit_quant_type", "nf4") != "nf4":
        raise ConfigError("quantization.bnb_4bit_quant_type: only nf4 is supported")
    if value.get("bnb_4bit_compute_dtype") is not None:
        log.info("quantization.bnb_4bit_compute_dtype: the 4-bit layers compute in the training precision "
                 "(float16 with precision: fp16, else bfloat16)", given=str(value["bnb_4bit_compute_dtype"]))
    return {"load_in_4bit": bool(value.get("load_in_4bit", False))}


def announce_defaults(translation: Translation) -> None:
    """Say which defaults apply where AlignTune 0.x's or TRL's would have trained something else (never a silent
    switch)."""
    missing = {key: text for key, text in DIFFERENT_DEFAULTS.items() if key not in translation.options}
    if not missing:
        return
    if translation.used_old_names:
        log.warning("AlignTune 0.x or TRL options recognised; where their defaults differ, these apply (set them "
                    "to choose)",
                    renamed=list(translation.used_old_names), **missing)
    else:
        log.info("defaults in effect", **missing)
