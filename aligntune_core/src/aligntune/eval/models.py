"""Loading the policy, the reference and the tokenizer for evaluation (plain transformers, or a backend's loader)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import attrs

from aligntune.core.model_paths import check_model_dir
from aligntune.errors import ConfigError
from aligntune.eval.config import EvalConfig
from aligntune.eval.plan import EvalPlan


@attrs.define
class LoadedModels:
    policy: Any
    reference: Any  # None when the reference is the policy itself or its adapter-disabled base
    tokenizer: Any
    plan: EvalPlan

    def reference_context(self):
        """Context in which `reference_model` scores as the reference."""
        if self.plan.reference_is_policy_base:
            return self.policy.disable_adapter()
        return contextlib.nullcontext()

    @property
    def reference_model(self):
        return self.reference if self.reference is not None else self.policy


def _dtype(name: str):
    import torch

    return "auto" if name == "auto" else getattr(torch, name)


def _load_causal_lm(path: str, dtype: str, trust_remote_code: bool = False):
    from transformers import AutoModelForCausalLM

    check_model_dir(path, option="model", need_tokenizer=False)
    try:
        return AutoModelForCausalLM.from_pretrained(path, dtype=_dtype(dtype),
                                                    trust_remote_code=trust_remote_code).eval()
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load the model {path!r}: {exc}") from None


def _load_tokenizer(path: str, fallback: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    for candidate in (path, fallback):
        try:
            tokenizer = AutoTokenizer.from_pretrained(candidate, trust_remote_code=trust_remote_code)
            break
        except (OSError, ValueError):
            continue
    else:
        raise ConfigError(f"cannot load a tokenizer from {path!r} or {fallback!r}")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _attach_adapter(base, adapter_dir: str):
    try:
        from peft import PeftModel
    except ImportError:
        raise ConfigError("use_lora=true needs peft: pip install peft (it comes with the TRL backend plugin, "
                          "pip install ./plugins/aligntune-backend-trl from an aligntune checkout)") from None
    if not (Path(adapter_dir) / "adapter_config.json").is_file():
        raise ConfigError(f"use_lora=true but {adapter_dir} has no adapter_config.json (is it a full model?)")
    check_model_dir(adapter_dir, option="model_path", need_tokenizer=False, adapter_ok=True)
    return PeftModel.from_pretrained(base, adapter_dir).eval()


def resolve_device(name: str | None):
    """`device` as a torch device: None/"auto" is cuda when available, else cpu."""
    import torch

    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r}: CUDA is not available here (torch {torch.__version__}); set "
                              "device: cpu, or leave device out to use a GPU when there is one")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r}: there are {torch.cuda.device_count()} CUDA device(s) here; "
                              f"use cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps': Apple's MPS is not available here; set device: cpu")
    return torch.device(name)


def unsloth_backend():
    """The Unsloth backend plugin for `use_unsloth=true`, with an error that names the option when it is missing."""
    from aligntune.errors import BackendUnavailableError, PluginError, UnknownPluginError
    from aligntune.plugins import get_backend, install_hint

    try:
        backend = get_backend("unsloth")
    except UnknownPluginError as exc:
        raise UnknownPluginError(
            "use_unsloth=true loads the models through the Unsloth backend plugin, which is not installed: "
            f"{install_hint('aligntune-backend-unsloth')}; or set use_unsloth: false to load them with transformers."
        ) from None
    except BackendUnavailableError as exc:
        raise BackendUnavailableError(
            f"use_unsloth=true: the Unsloth backend plugin cannot run here ({exc}); set use_unsloth: false to load "
            "the models with transformers") from None
    except PluginError as exc:
        raise type(exc)(f"use_unsloth=true: {exc}") from None
    if getattr(backend, "load_model", None) is None:
        raise ConfigError("use_unsloth=true: the installed Unsloth backend cannot load models for evaluation (it "
                          "has no load_model); upgrade aligntune-backend-unsloth, or set use_unsloth: false")
    return backend


def _place(model, device):
    """Move a model loaded on the CPU to `device` (models already dispatched across devices stay where they are)."""
    if getattr(model, "hf_device_map", None):
        return model
    return model.to(device)


def load_models(config: EvalConfig, plan: EvalPlan) -> LoadedModels:
    from aligntune.logging_setup import adopt_library_logging

    adopt_library_logging()  # JSON-lines logs: transformers' own output through them too
    if config.use_unsloth:
        backend_loader = unsloth_backend().load_model
        options: dict[str, Any] = {"dtype": config.dtype}
        if config.trust_remote_code:
            options["trust_remote_code"] = True

        def loader(path: str, base_model: str | None):
            try:
                return backend_loader(path, base_model=base_model, **options)
            except TypeError as exc:
                if "trust_remote_code" not in str(exc):
                    raise
                raise ConfigError("trust_remote_code with use_unsloth needs a newer aligntune-backend-unsloth (this "
                                  "one cannot pass it to Unsloth's loader): upgrade it, or set use_unsloth: false"
                                  ) from None

        policy, tokenizer = loader(plan.policy_path, plan.policy_adapter_on)
        reference = None
        if not (plan.reference_is_policy or plan.reference_is_policy_base):
            reference, _ = loader(plan.reference_path, None)
        return LoadedModels(policy=policy, reference=reference, tokenizer=tokenizer, plan=plan)

    device = resolve_device(config.device)
    remote = config.trust_remote_code
    tokenizer = _load_tokenizer(plan.tokenizer_path, plan.policy_adapter_on or plan.reference_path, remote)
    if plan.policy_adapter_on is not None:
        policy = _attach_adapter(_load_causal_lm(plan.policy_adapter_on, config.dtype, remote), plan.policy_path)
    else:
        policy = _load_causal_lm(plan.policy_path, config.dtype, remote)
    policy = _place(policy, device)
    reference = None
    if not (plan.reference_is_policy or plan.reference_is_policy_base):
        reference = _place(_load_causal_lm(plan.reference_path, config.dtype, remote), device)
    return LoadedModels(policy=policy, reference=reference, tokenizer=tokenizer, plan=plan)
