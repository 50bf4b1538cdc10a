"""AlignTune 0.x `EvalConfig` options: retired ones refused, and the values its aliases take translated.

Users coming from AlignTune 0.x paste their `EvalConfig(...)` calls and YAML files. Options that mean the same thing
under another name (`max_length`, `dpo_beta`, `precision`) are declared as aliases on the `EvalConfig` field
(`aligntune.core.options`); here their values are translated (`precision: bf16` is `dtype: bfloat16`, and `None`,
0.x's "not set", leaves our default). Options that have no meaning for DPO evaluation are refused with what to write
instead — unless their value asks for nothing (`use_vllm=False`, `reward_model=None`, ...), which is accepted and has
no effect. See docs/evaluation.md, "Coming from AlignTune 0.x".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs
import structlog

from aligntune.core.options import InvalidValueError, Renamed, alias_table, rename_aliases
from aligntune.errors import UnknownOptionError

log = structlog.get_logger("aligntune.eval")

PRECISIONS: dict[str, str] = {
    "fp32": "float32", "float32": "float32",
    "bf16": "bfloat16", "bfloat16": "bfloat16",
    "fp16": "float16", "float16": "float16", "half": "float16",
    "auto": "auto",
}


def _is_none(value: Any) -> bool:
    return value is None


def _none_or_false(value: Any) -> bool:
    return value is None or value is False


@attrs.frozen
class Retired:
    """A 0.x option with no meaning here: `instead` says what to write; values for which `harmless` holds ask for
    nothing and are accepted (with no effect)."""

    instead: str
    harmless: Callable[[Any], bool] = _is_none


_VLLM = "it is a vLLM setting, and evaluation scores and generates with transformers (set device: cuda and " \
        "dtype: bfloat16 for speed)"
_DATA_CHECKS = "rows are checked by the same validation as training: unusable pairs are skipped and counted under " \
               "'data' in results.json"
_SPLITS = "split the data yourself and pass the held-out part, run_eval(config, " \
          "dataset=ds.train_test_split(test_size=0.1, seed=0)['test']), or give data_files={test: ...}"
_PRINTING = "report.md lists the lowest-margin pairs and per_example.jsonl holds every pair"
_WANDB = "evaluation writes results.json and report.md into output_dir; log those to W&B yourself"

RETIRED: dict[str, Retired] = {
    "k_list": Retired("pass@k is not a preference metric; choose metrics from reward_margin, preference_accuracy, "
                      "win_rate, kl_divergence, log_ratio, implicit_reward, calibration, reward_accuracy, "
                      "policy_entropy"),
    "reward_model": Retired("set judge_model_path to a sequence-classification reward model (hub id or path) for "
                            "win_rate, or judge to the name of an installed judge plugin"),
    "use_vllm": Retired(_VLLM, _none_or_false),
    "gpu_memory_utilization": Retired(_VLLM),
    "tensor_parallel_size": Retired(_VLLM),
    "max_lora_rank": Retired(_VLLM),
    "low_cpu_mem_usage": Retired("models are always loaded with low CPU memory use",
                                 lambda v: v is None or isinstance(v, bool)),
    "load_in_4bit": Retired("log-probs are scored with the model's own weights, not a 4-bit copy; set dtype: "
                            "bfloat16 to halve memory", _none_or_false),
    "quantization": Retired("log-probs are scored with the model's own weights, not a quantized copy; set dtype: "
                            "bfloat16 to halve memory"),
    "device_map": Retired("use device: cuda (or cpu, cuda:1, ...); each model is placed whole on that device"),
    "enable_thinking": Retired("rows are rendered with the tokenizer's chat template exactly as in training",
                               _none_or_false),
    "apply_chat_template": Retired("conversational rows (message lists) are always rendered with the chat template "
                                   "and plain-text rows never are, exactly as in training"),
    "processing_fn": Retired("transform the data first and pass it: run_eval(config, dataset=my_dataset.map(fn))"),
    "processing_batched": Retired("transform the data first and pass it: run_eval(config, "
                                  "dataset=my_dataset.map(fn, batched=True))", _none_or_false),
    "auto_detect": Retired("name the format with dataset_adapter (for example hh-rlhf), or rename columns with "
                           "column_mapping"),
    "code_prompt_template": Retired("code generation is not part of preference evaluation"),
    "val_split_ratio": Retired(_SPLITS),
    "test_split_ratio": Retired(_SPLITS),
    "curator_schema_gate": Retired(_DATA_CHECKS),
    "curator_clean": Retired(_DATA_CHECKS),
    "curator_dedup": Retired(_DATA_CHECKS),
    "curator_use_tiktoken": Retired(_DATA_CHECKS),
    "curator_max_tokens": Retired(_DATA_CHECKS),
    "domain": Retired("it had no effect in AlignTune 0.x either"),
    "num_samples": Retired("win_rate generates one response per prompt", lambda v: v is None or v == 1),
    "num_print_samples": Retired(_PRINTING),
    "print_sample_mode": Retired(_PRINTING),
    "print_sample_indices": Retired(_PRINTING),
    "wandb_project": Retired(_WANDB),
    "wandb_entity": Retired(_WANDB),
    "wandb_tags": Retired(_WANDB),
    "wandb_notes": Retired(_WANDB),
}


def _option(key: str) -> str:
    return f"option {key!r}"


def _translate_value(alias: str, value: Any) -> Any:
    if alias == "precision":
        if value is None:
            return None
        name = PRECISIONS.get(str(value).lower())
        if name is None:
            raise InvalidValueError(alias, f"must be one of {', '.join(PRECISIONS)} (the same as dtype: "
                                           f"float32, bfloat16, float16, auto), got {value!r}")
        return name
    return value


def translate_options(cls: type, values: Mapping[str, Any], lines: Mapping[str, int] | None = None, *,
                      where: Callable[[str], str] = _option) -> Renamed:
    """`values` (for the config class `cls`) with aliases renamed, their values translated, and harmless retired
    options dropped.

    Raises `UnknownOptionError` for a retired option whose value asks for something this evaluation does not do,
    and `InvalidValueError` for an alias given together with the option it stands for, or a value it cannot take."""
    kept: dict[str, Any] = {}
    for key, value in values.items():
        retired = RETIRED.get(key)
        if retired is None:
            kept[key] = value
        elif retired.harmless(value):
            log.debug("AlignTune 0.x option accepted with no effect", option=key, value=value)
        else:
            raise UnknownOptionError(
                f"{where(key)}: AlignTune 0.x option that aligntune's evaluation does not have; remove it: "
                f"{retired.instead}. See docs/evaluation.md (Coming from AlignTune 0.x)."
            )
    renamed = rename_aliases(cls, kept, lines)
    out = renamed.values
    for alias in renamed.aliases_used:
        option = alias_table(cls)[alias].option
        if out[option] is None:  # 0.x's "not set": our own default (read back from the run) applies
            del out[option]
        else:
            out[option] = _translate_value(alias, out[option])
    return renamed
