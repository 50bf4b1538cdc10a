"""Which batch layout and attention a run uses, decided once, with the reason logged.

Three layouts compute the same log-probs (tested): two padded rows per pair; prefix sharing (`[prompt | chosen |
rejected]` once per pair); prefix sharing with packing (several pairs per row). Shared and packed rows need an
attention that takes their mask: a dense additive 4-D mask (`sdpa`, `eager`) or a FlexAttention block mask
(`flex_attention`, block-sparse: no L x L tensor).

Defaults, per device, from `benchmarks/dpo_speed.py` (docs/performance.md):
- CPU: sharing and packing with the dense mask (measured fastest; flex attention is not used on a CPU: torch's
  compiled CPU kernel crashed in our tests and the uncompiled one materialises the scores).
- CUDA GPU: sharing and packing with a flex block mask, when the model class supports flex attention; otherwise
  sharing with the dense mask and no packing (a dense mask keeps SDPA off its flash kernels, and packing makes the
  mask larger).
An explicit `prefix_sharing`, `packing` or `attn_implementation` always wins.
"""

from __future__ import annotations

from typing import Any

import attrs
from aligntune.core.config import TrainConfig
from aligntune.errors import ConfigError
from aligntune.modeling.attention import DENSE_MASK_IMPLEMENTATIONS, FLEX, uses_position_ids_only

MASKED_ATTENTION = (*DENSE_MASK_IMPLEMENTATIONS, FLEX)


@attrs.frozen
class Layout:
    prefix_sharing: bool
    packing: bool  # with prefix_sharing: shared pairs per row; without: whole sequences per row
    attn_implementation: str | None  # to load the model with; None: the model's own default (sdpa)
    reason: str

    @property
    def position_ids_only(self) -> bool:
        """Packed whole sequences under variable-length attention: no mask, `position_ids` alone."""
        return self.packing and not self.prefix_sharing and uses_position_ids_only(self.attn_implementation)

    @property
    def row_tokens_unbounded(self) -> bool:
        """Variable-length kernels take one packed row (batch size 1): every pair of a batch goes in it."""
        return self.position_ids_only

    @property
    def description(self) -> str:
        if not self.prefix_sharing and not self.packing:
            return "two padded rows per pair"
        if self.position_ids_only:
            return "packed whole sequences in one row, variable-length attention from position ids"
        rows = "packed prefix-shared rows" if self.prefix_sharing and self.packing else \
            "prefix-shared rows" if self.prefix_sharing else "packed whole sequences"
        mask = "flex block mask" if self.attn_implementation == FLEX else "dense 4-D mask"
        return f"{rows}, {mask}"


def requested_attention(config: TrainConfig) -> str | None:
    return (config.training_args.get("model_init_kwargs") or {}).get("attn_implementation")


def read_model_config(model_name: str) -> Any:
    """The model's `config.json` as a transformers config (nothing else is loaded), or None when it cannot be read
    here; the layout then takes the choices that need nothing from it (dense mask, no router loss)."""
    try:
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(model_name)
    except Exception:  # a missing or unreadable config fails later, where the model is loaded, with its own error
        return None


def supports_flex(model_config: Any) -> bool:
    """Whether the model's class can run `flex_attention`."""
    from transformers import AutoModelForCausalLM

    if model_config is None:
        return False
    model_class = AutoModelForCausalLM._model_mapping.get(type(model_config), None)
    return bool(getattr(model_class, "_supports_flex_attn", False))


def router_loss_weight(config: TrainConfig, model_config: Any) -> float:
    """The weight of a mixture-of-experts model's router load-balancing loss in the DPO loss (0: none), as TRL
    decides it: `training_args.router_aux_loss_coef`, else the architecture's own coefficient."""
    if model_config is None:
        return 0.0
    model_config = model_config.get_text_config()
    if not hasattr(model_config, "output_router_logits"):
        return 0.0
    given = config.training_args.get("router_aux_loss_coef")
    return float(getattr(model_config, "router_aux_loss_coef", 0.0) if given is None else given)


def choose_layout(config: TrainConfig, *, cuda: bool, sharing_default: bool = True,
                  model_loaded: bool = False) -> Layout:
    """The layout for `config` on this device. `model_loaded`: the model comes already loaded (another backend),
    so its attention cannot be chosen here."""
    requested = requested_attention(config)
    model_config = read_model_config(config.model_name)
    if router_loss_weight(config, model_config):
        if config.prefix_sharing is True or config.packing is True:
            raise ConfigError(
                "prefix_sharing/packing cannot be used with a mixture-of-experts model whose router load-balancing "
                "loss is part of the DPO loss: the model computes that loss from a per-token padding mask, which "
                "shared or packed rows do not have. Set prefix_sharing: false, or training_args.router_aux_loss_coef: 0."
            )
        return Layout(False, False, requested, "mixture-of-experts router loss (computed over a padding mask)")
    if config.training_args.get("truncation_mode") == "keep_end":
        # keep_end cuts the start of [prompt | chosen] and [prompt | rejected] separately (TRL's padded collator):
        # the two sides may keep different prompt tokens, so there is no one prompt to share or pack.
        if config.prefix_sharing is True or config.packing is True:
            raise ConfigError(
                "training_args.truncation_mode: keep_end cuts each sequence's start separately, so a pair's two "
                "sequences may keep different prompts: prefix_sharing/packing cannot lay them out. Set "
                "prefix_sharing: false and packing: false, or use keep_start (the default) with max_prompt_length "
                "to keep the end of long prompts.")
        return Layout(False, False, requested, "truncation_mode keep_end (TRL's padded collator cuts each sequence's "
                                               "start)")
    if requested is not None and requested not in MASKED_ATTENTION:
        if config.prefix_sharing is True:
            raise ConfigError(
                f"prefix_sharing needs an attention implementation that takes its mask ({', '.join(MASKED_ATTENTION)}); "
                f"attn_implementation={requested!r} does not. Set prefix_sharing: false, or use sdpa."
            )
        if uses_position_ids_only(requested) and config.packing is not False:
            return Layout(False, True, requested, f"attn_implementation {requested!r}: variable-length attention")
        return Layout(False, False, requested, f"attn_implementation {requested!r} takes no packed-row mask")
    attention = requested
    if attention is None and cuda and not model_loaded and supports_flex(model_config):
        attention = FLEX
    sharing = config.prefix_sharing if config.prefix_sharing is not None else sharing_default
    if not sharing:
        why = "prefix_sharing: false" if config.prefix_sharing is False else "prefix sharing is off by default here"
        if config.packing is not None:
            return Layout(False, config.packing, attention, f"{why}; packing: {str(config.packing).lower()}")
        if cuda and attention == FLEX:  # no dense L x L mask on a GPU: whole sequences packed under a block mask
            return Layout(False, True, attention, f"{why}; GPU default: packed sequences with a flex block mask")
        return Layout(False, False, attention, why)
    if config.packing is not None:
        packing, why = config.packing, f"packing: {str(config.packing).lower()}"
    elif not cuda:
        packing, why = True, "CPU default (measured fastest)"
    elif attention == FLEX:
        packing, why = True, "GPU default with a flex block mask (no dense mask to grow)"
    else:
        packing, why = False, "GPU default with a dense mask (packing would enlarge it)"
    return Layout(True, packing, attention, why)


def check_model_attention(layout: Layout, model: Any) -> None:
    """After loading: the model really runs an attention that takes the layout's rows."""
    if not layout.prefix_sharing and not layout.packing:
        return
    implementation = getattr(getattr(model, "config", None), "_attn_implementation", "sdpa")
    if layout.position_ids_only:
        if not uses_position_ids_only(implementation):
            raise ConfigError(f"packed sequences without a mask need variable-length attention; the model uses "
                              f"{implementation!r}. Set packing: false.")
        return
    if implementation not in MASKED_ATTENTION:
        raise ConfigError(
            f"prefix sharing and packing need an attention implementation that takes their mask "
            f"({', '.join(MASKED_ATTENTION)}); the model uses {implementation!r}. Set prefix_sharing: false and "
            "packing: false."
        )
