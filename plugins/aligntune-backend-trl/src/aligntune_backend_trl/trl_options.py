"""How each TRL `DPOConfig` field is handled here: one table, so no option is accepted and then silently ignored.

aligntune replaces parts of TRL's DPOTrainer (the loss and log-probs in `compute_loss`, the reference pass and its
precompute, batched tokenization of plain-text pairs, and the prefix-shared/packed collator). A `DPOConfig` field that
only TRL's replaced code reads would be accepted and do nothing. So every field `DPOConfig` adds to transformers'
`TrainingArguments` is classified here (a test checks the table covers the installed TRL's fields):

- `OPTION`: an aligntune option sets it (or means the same); `training_args.<field>` is an error naming the option.
- `HONOURED`: passed to TRL and it takes effect — through TRL's own code where aligntune does not replace it, or
  through aligntune's code where it does (the reason says which; tests check the latter on a real tiny model).
- `REFUSED`: not supported; any value but TRL's default is an error saying what to do instead.

`TrainingArguments` fields (the optimiser, schedule, logging, saving) go to transformers' `Trainer` loop, which
aligntune does not replace.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

from aligntune.errors import ConfigError


class How(enum.Enum):
    OPTION = "set by an aligntune option"
    HONOURED = "passed to TRL, takes effect"
    REFUSED = "refused"


@attrs.frozen
class Handling:
    how: How
    detail: str  # OPTION: the aligntune option; otherwise why / where it takes effect, or what to do instead


def _option(name: str) -> Handling:
    return Handling(How.OPTION, name)


def _honoured(why: str) -> Handling:
    return Handling(How.HONOURED, why)


def _refused(what_to_do: str) -> Handling:
    return Handling(How.REFUSED, what_to_do)


_F_DIVERGENCE = ("f-divergence DPO is not among aligntune's losses (reverse KL, TRL's default, is what every loss "
                 "computes); choose a loss_type (aligntune plugins list) or add one as a loss plugin "
                 "(docs/plugins/writing-a-loss.md)")

# Every field TRL 1.16's DPOConfig adds to TrainingArguments.
DPO_FIELDS: dict[str, Handling] = {
    "model_init_kwargs": _honoured("TRL loads the policy with them; aligntune's reference copy for evaluate() too"),
    "trust_remote_code": _honoured("TRL loads the policy with it; aligntune's reference copy for evaluate() too"),
    "router_aux_loss_coef": _honoured("aligntune's compute_loss adds coef x the policy's router loss, as TRL; the "
                                      "layout reads it (a router loss needs padded rows)"),
    "disable_dropout": _honoured("TRL's __init__ (not replaced) disables dropout in the policy and reference"),
    "dataset_num_proc": _honoured("TRL's tokenization and aligntune's (batched tokenization, truncation, dropping) "
                                  "map over the data with this many processes"),
    "max_length": _option("max_seq_length"),
    "truncation_mode": _honoured("keep_start: every layout. keep_end: TRL's padded collator cuts each sequence's "
                                 "start; prefix-shared/packed rows cannot (the prompt is shared), so keep_end picks "
                                 "two padded rows per pair and refuses prefix_sharing/packing: true"),
    "padding_free": _option("packing"),
    "pad_to_multiple_of": _honoured("TRL's padded collator, and aligntune's prefix-shared/packed collator, pad each "
                                    "batch's width to a multiple of it"),
    "precompute_ref_log_probs": _option("precompute_ref_log_probs"),
    "precompute_ref_batch_size": _honoured("aligntune's reference precompute batches the data by it"),
    "loss_type": _option("loss_type"),
    "loss_weights": _option("loss_weights"),
    "ld_alpha": _option("ld_alpha"),
    "f_divergence_type": _refused(_F_DIVERGENCE),
    "f_alpha_divergence_coef": _refused(_F_DIVERGENCE),
    "label_smoothing": _option("label_smoothing"),
    "beta": _option("beta"),
    "use_weighting": _option("use_weighting"),
    "discopop_tau": _option("loss_params: {discopop_tau: ...}"),
    "activation_offloading": _honoured("TRL's training_step (not replaced) runs aligntune's compute_loss inside "
                                       "its offloading context; on a machine without an accelerator (where TRL's "
                                       "offloading fails) it is an error"),
    "sync_ref_model": _honoured("TRL's SyncRefModelCallback updates the reference copy, which aligntune's "
                                "reference pass runs (precompute resolves to off with it)"),
    "ref_model_mixup_alpha": _honoured("read by TRL's SyncRefModelCallback (sync_ref_model)"),
    "ref_model_sync_steps": _honoured("read by TRL's SyncRefModelCallback (sync_ref_model)"),
    "pad_token": _honoured("set on the tokenizer before aligntune's collator is built (TRL only applies it to its "
                           "own collator)"),
}

# Fields of older TRL releases that 1.16 removed: what they became.
REMOVED_FIELDS: dict[str, str] = {
    "rpo_alpha": "since TRL 1.0 it is the sft loss: give it as the top-level option rpo_alpha: X (aligntune turns it "
                 "into loss_type: [<loss>, sft], loss_weights: [1.0, X]), or write that loss list yourself",
    "generate_during_eval": "aligntune evaluates generations after training: `aligntune eval <output_dir>` or "
                            "run_eval(EvalConfig(...)) with a judged win rate (docs/evaluation.md)",
}


def check_training_arg(key: str, value: Any, default: Any) -> None:
    """Raise `ConfigError` when `training_args.<key>` would be set by an option, is refused, or was removed."""
    handling = DPO_FIELDS.get(key)
    if key in REMOVED_FIELDS:
        raise ConfigError(f"training_args.{key}: not a field of TRL 1.x's DPOConfig; {REMOVED_FIELDS[key]}")
    if handling is None or handling.how is How.HONOURED:
        return
    if handling.how is How.OPTION:
        raise ConfigError(f"training_args.{key}: set it with the aligntune option {handling.detail} instead "
                          "(aligntune computes it itself; TRL's code for it does not run here)")
    if value != default:
        raise ConfigError(f"training_args.{key}={value!r} is not supported: {handling.detail}")
