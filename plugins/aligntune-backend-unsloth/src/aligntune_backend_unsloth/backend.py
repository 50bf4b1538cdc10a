"""Loading with Unsloth and training through the TRL backend's trainer (the same losses, data and outputs)."""

from __future__ import annotations

import sys
from typing import Any

import attrs
import structlog

from aligntune.core.config import TrainConfig
from aligntune.core.model_paths import check_model_dir
from aligntune.errors import BackendUnavailableError, ConfigError

log = structlog.get_logger("aligntune.backend.unsloth")

# Unsloth's own default LoRA targets for decoder-only models.
DEFAULT_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
_PATCHED_LIBRARIES = ("transformers", "trl", "peft")


def import_fast_language_model():
    """Import unsloth (it must come before transformers/trl to patch them) and return FastLanguageModel."""
    if "unsloth" not in sys.modules:
        early = [name for name in _PATCHED_LIBRARIES if name in sys.modules]
        if early:
            log.warning(
                "transformers/trl were imported before unsloth, so some of unsloth's speed-ups may not apply",
                already_imported=early,
                hint="put `import unsloth` (or `import aligntune_backend_unsloth.backend`) at the very top of your "
                     "program, before transformers/trl/peft; the aligntune CLI does this for you",
            )
    try:
        import unsloth  # noqa: F401  (patches transformers/trl on import)
        from unsloth import FastLanguageModel
    except Exception as exc:  # a broken install, a disabled CPU fallback, a version conflict
        raise BackendUnavailableError(f"backend 'unsloth' cannot start: importing unsloth failed: {exc}") from exc
    return FastLanguageModel


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def wants_4bit(config: TrainConfig) -> bool:
    if config.load_in_4bit is not None:
        return config.load_in_4bit
    return "bnb-4bit" in config.model_name.lower() or "4bit" in config.model_name.lower()


def _dtype(precision: str):
    import torch

    return {"auto": None, "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def resolve_config(config: TrainConfig) -> TrainConfig:
    """Unsloth trains LoRA adapters unless asked for full fine-tuning explicitly (use_lora=false)."""
    use_lora = True if config.use_lora is None else config.use_lora
    four_bit = wants_4bit(config)
    if four_bit and not use_lora:
        raise ConfigError("4-bit (QLoRA) training needs LoRA: leave use_lora unset or set it to true")
    return attrs.evolve(config, use_lora=use_lora, load_in_4bit=four_bit)


def create_trainer(config: TrainConfig):
    FastLanguageModel = import_fast_language_model()
    from aligntune_backend_trl.build import build_trainer

    config = resolve_config(config)
    check_model_dir(config.model_name, option="model_name")
    init = config.training_args.get("model_init_kwargs") or {}
    if init:
        # TRL reads them only when it loads the model itself; here Unsloth does, so they would do nothing.
        raise ConfigError(
            f"training_args.model_init_kwargs ({', '.join(sorted(init))}; also set by trust_remote_code, dtype, "
            "attn_implementation, model_revision) is not applied by the unsloth backend: Unsloth loads the model "
            "itself. Remove them, or use backend: trl")
    if config.load_in_4bit and not _cuda_available():
        raise ConfigError(
            f"4-bit loading of {config.model_name!r} needs a CUDA GPU (bitsandbytes); this machine has none. Use a "
            "GPU machine, or a non-quantized checkpoint with load_in_4bit=false."
        )
    try:
        model, tokenizer = FastLanguageModel.from_pretrained(
            model_name=config.model_name,
            max_seq_length=config.max_seq_length,
            dtype=_dtype(config.precision),
            load_in_4bit=config.load_in_4bit,
            full_finetuning=not config.use_lora,
        )
    except (OSError, ValueError) as exc:
        raise ConfigError(f"unsloth cannot load model_name={config.model_name!r}: {exc}") from None
    checkpointing = config.gradient_checkpointing
    if config.use_lora:
        model = FastLanguageModel.get_peft_model(
            model,
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=config.lora_target_modules or DEFAULT_TARGET_MODULES,
            use_gradient_checkpointing="unsloth" if checkpointing in (None, True) else False,
            random_state=config.seed,
        )
        # Unsloth manages checkpointing itself; the trainer must not enable it a second time.
        config = attrs.evolve(config, gradient_checkpointing=False)
    if getattr(tokenizer, "pad_token", None) is None:
        tokenizer.pad_token = tokenizer.eos_token
    log.info("unsloth model ready", model=config.model_name, lora=config.use_lora, four_bit=config.load_in_4bit)
    # Unsloth patches the attention forward; prefix sharing (a 4-D mask) stays opt-in here.
    trainer = build_trainer(config, model=model, tokenizer=tokenizer, prefix_sharing_default=False)
    if config.use_lora:
        # Found by aligntune.testing.check_backend_contract on Unsloth's CPU fallback: a resumed LoRA run does not get
        # its adapter weights back (its first resumed step has loss ln 2, the untrained adapter's), so it would
        # silently train a fresh adapter on the old optimizer state. Refused until resuming is exact.
        trainer.resume_unsupported = (
            "resuming an Unsloth LoRA run does not restore its adapter weights (checked on Unsloth's CPU fallback; "
            "not yet verified on a GPU), so it is refused rather than silently restarting the adapter. Start a new "
            "run (another output_dir, or overwrite_output_dir: true), or train with backend: trl, which resumes "
            "exactly")
    return trainer


def load_model(path: str, *, base_model: str | None = None, dtype: str = "float32",
               trust_remote_code: bool = False) -> tuple[Any, Any]:
    """Load a model (or a LoRA adapter at `path` on `base_model`) with Unsloth, for evaluation."""
    import torch

    FastLanguageModel = import_fast_language_model()
    torch_dtype = None if dtype == "auto" else getattr(torch, dtype)
    source = base_model or path
    four_bit = "4bit" in source.lower() and _cuda_available()
    try:
        model, tokenizer = FastLanguageModel.from_pretrained(model_name=source, dtype=torch_dtype,
                                                             load_in_4bit=four_bit,
                                                             trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"unsloth cannot load {source!r}: {exc}") from None
    if base_model is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, path)
        try:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        except (OSError, ValueError):
            pass
    if getattr(tokenizer, "pad_token", None) is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer
