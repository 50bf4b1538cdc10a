"""The unsloth backend for real: DPO of a tiny local model on CPU through Unsloth's CPU fallback.

Runs in the nox session `unsloth`, whose venv satisfies Unsloth's pins (trl 1.15, transformers 5.17, datasets 4.x)
with the CPU torch 2.13.0.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("unsloth", reason="unsloth is not installed here; run `nox -s unsloth`")

import aligntune_backend_unsloth.backend  # noqa: E402,F401  (imports unsloth before transformers/trl)
from aligntune.core.backend_factory import create_rl_trainer  # noqa: E402
from aligntune.errors import BackendUnavailableError, ConfigError  # noqa: E402
from conftest import write_fake_distribution  # noqa: E402

COMMON = dict(batch_size=8, max_steps=4, logging_steps=1, learning_rate=1e-2, save_steps=None, precision="fp32")


def test_dpo_training_through_unsloth_with_the_users_lora_settings(tiny_model, pairs_jsonl, tmp_path):
    from aligntune_backend_trl.trainer import AlignTuneDPOTrainer
    from peft import PeftModel

    trainer = create_rl_trainer(model_name=str(tiny_model), dataset_name=str(pairs_jsonl), backend="unsloth",
                                output_dir=str(tmp_path), lora_r=4, lora_alpha=8, lora_dropout=0.0,
                                lora_target_modules=["q_proj", "v_proj"], loss_type="hinge", beta=0.2, **COMMON)
    assert isinstance(trainer, AlignTuneDPOTrainer)  # the same trainer subclass and core losses as the TRL backend
    assert isinstance(trainer.model, PeftModel)
    assert trainer.ref_model is None  # the reference is the adapter-disabled base, no second model
    trainer.train()
    losses = [entry["loss"] for entry in trainer.log_history if "loss" in entry]
    assert len(losses) == 4 and losses[0] == pytest.approx(1.0, abs=1e-6)  # hinge at Δ = 0: relu(1 - 0)
    assert len({round(loss, 5) for loss in losses}) > 1  # the adapter trains
    # The adapter-disabled base is the reference; its log-probs are precomputed once per batch before training
    # (the default), not per step.
    assert trainer.precompute_ref_logps and trainer.reference_forward_calls == -(-len(trainer.train_dataset) // 8)
    adapter = json.loads((tmp_path / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and adapter["lora_alpha"] == 8 and set(adapter["target_modules"]) == {"q_proj", "v_proj"}
    record = json.loads((tmp_path / "aligntune_run.json").read_text())
    assert record["backend"] == "unsloth" and record["use_lora"] is True and record["loss_type"] == "hinge"
    assert record["versions"]["unsloth"]


def test_four_bit_without_a_gpu_is_a_clear_error(tiny_model, pairs_jsonl, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: 4-bit loading is possible here")
    with pytest.raises(ConfigError, match="4-bit loading of .* needs a CUDA GPU"):
        create_rl_trainer(model_name=str(tiny_model), dataset_name=str(pairs_jsonl), backend="unsloth",
                          output_dir=str(tmp_path), load_in_4bit=True, **COMMON)
    with pytest.raises(ConfigError, match="4-bit .*needs a CUDA GPU"):
        create_rl_trainer(model_name="unsloth/Llama-3.2-1B-Instruct-bnb-4bit", dataset_name=str(pairs_jsonl),
                          backend="unsloth", output_dir=str(tmp_path), **COMMON)


def test_model_loading_arguments_unsloth_would_not_apply_are_refused(tiny_model, pairs_jsonl, tmp_path):
    with pytest.raises(ConfigError, match=r"model_init_kwargs \(attn_implementation.*unsloth backend"):
        create_rl_trainer(model_name=str(tiny_model), dataset_name=str(pairs_jsonl), backend="unsloth",
                          output_dir=str(tmp_path), attn_implementation="eager", **COMMON)


def test_disabled_cpu_fallback_makes_the_backend_unavailable_with_the_reason(monkeypatch, tmp_path, pairs_jsonl):
    from aligntune import plugins

    if any(os.path.exists(p) for p in ("/dev/nvidiactl", "/dev/nvidia0")):
        pytest.skip("a GPU is present: the CPU fallback does not matter here")
    monkeypatch.setenv("UNSLOTH_DISABLE_CPU_FALLBACK", "1")
    plugins.reset_registry()
    try:
        listed = {p.name: p for p in plugins.list_plugins()}
        assert listed["aligntune-backend-unsloth"].status == "unavailable"
        assert "UNSLOTH_DISABLE_CPU_FALLBACK=1" in listed["aligntune-backend-unsloth"].error
        with pytest.raises(BackendUnavailableError, match="no GPU found and UNSLOTH_DISABLE_CPU_FALLBACK=1"):
            create_rl_trainer(model_name="m", dataset_name=str(pairs_jsonl), backend="unsloth")
    finally:
        monkeypatch.delenv("UNSLOTH_DISABLE_CPU_FALLBACK")
        plugins.reset_registry()


def test_a_version_conflict_is_reported_without_importing_anything_heavy(tmp_path):
    # A fake installed "unsloth" whose pins the real trl cannot satisfy, found first on the path.
    write_fake_distribution(tmp_path, "unsloth", "2099.1.1", {}, {})
    (tmp_path / "unsloth-2099.1.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: unsloth\nVersion: 2099.1.1\nRequires-Dist: trl<=0.0.1\n"
        "Requires-Dist: torch<2.15.0,>=2.4.0\n", encoding="utf-8")
    code = textwrap.dedent("""
        import sys, json
        from aligntune.plugins import list_plugins
        info = {p.name: p for p in list_plugins()}["aligntune-backend-unsloth"]
        heavy = [m for m in ("torch", "transformers", "trl", "unsloth") if m in sys.modules]
        print(json.dumps({"status": info.status, "error": info.error, "heavy": heavy}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["status"] == "unavailable"
    assert "unsloth 2099.1.1 requires trl<=0.0.1 but trl" in result["error"]
    assert result["heavy"] == []


def test_importing_transformers_first_is_detected_and_explained(tiny_model, pairs_jsonl, tmp_path):
    code = textwrap.dedent(f"""
        import transformers  # the wrong order: before unsloth
        from aligntune.core.backend_factory import create_rl_trainer
        trainer = create_rl_trainer(model_name={str(tiny_model)!r}, dataset_name={str(pairs_jsonl)!r},
                                    backend="unsloth", output_dir={str(tmp_path)!r}, max_steps=1, batch_size=4,
                                    save_steps=None, precision="fp32")
        trainer.train()
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "transformers/trl were imported before unsloth" in proc.stderr
    assert "import unsloth" in proc.stderr


def test_evaluation_loads_through_unsloth(tiny_model, pairs_jsonl, tmp_path):
    from aligntune.eval.core import EvalConfig, run_eval

    out = tmp_path / "run"
    trainer = create_rl_trainer(model_name=str(tiny_model), dataset_name=str(pairs_jsonl), backend="unsloth",
                                output_dir=str(out), lora_r=4, lora_alpha=8, lora_dropout=0.0, **COMMON)
    trainer.train()
    common = dict(model_path=str(out), use_lora=True, output_dir=str(tmp_path / "eval"), dataset_name=str(pairs_jsonl),
                  split="train", max_samples=16)
    # trust_remote_code reaches Unsloth's loader (a model without remote code loads the same either way)
    through_unsloth = run_eval(EvalConfig(use_unsloth=True, trust_remote_code=True, **common))
    plain = run_eval(EvalConfig(**{**common, "output_dir": str(tmp_path / "eval_plain")}))
    assert through_unsloth["reward_margin"] == pytest.approx(plain["reward_margin"], abs=1e-4)
    assert through_unsloth["reward_margin"] != 0.0
