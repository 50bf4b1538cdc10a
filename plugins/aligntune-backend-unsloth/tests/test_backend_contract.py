"""The unsloth backend meets the backend contract (aligntune.testing.check_backend_contract), on Unsloth's CPU
fallback in the nox session `unsloth`: the same guarantees as the TRL backend, for its default LoRA training."""

from __future__ import annotations

import pytest

pytest.importorskip("unsloth", reason="unsloth is not installed here; run `nox -s unsloth`")

import aligntune_backend_unsloth.backend  # noqa: E402,F401  (imports unsloth before transformers/trl)
from aligntune.testing import check_backend_contract, tiny_backend_inputs  # noqa: E402


@pytest.mark.slow
def test_the_unsloth_backend_meets_the_backend_contract(tmp_path):
    model_dir, data_file = tiny_backend_inputs(tmp_path / "inputs")
    # LoRA (the backend's default) without dropout, on the tiny model's attention projections.
    options = {"lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "lora_target_modules": ["q_proj", "v_proj"]}
    # Resuming is refused for Unsloth LoRA runs (the kit found the adapter weights are not restored): the checks
    # that resume a run are left out here, and the refusal itself is checked below.
    from aligntune.backend_contract import CHECKS

    checks = [name for name in CHECKS if name not in ("kill-9-resume", "half-written-checkpoint-skipped")]
    results = check_backend_contract("unsloth", model_dir=model_dir, data_file=data_file, workdir=tmp_path / "work",
                                     options=options, checks=checks)
    assert [result.name for result in results if result.passed] == checks


@pytest.mark.slow
def test_resuming_an_unsloth_lora_run_is_refused_not_silently_restarted(tmp_path):
    from aligntune.core.backend_factory import create_rl_trainer
    from aligntune.errors import ResumeError

    model_dir, data_file = tiny_backend_inputs(tmp_path / "inputs")
    settings = dict(model_name=str(model_dir), dataset_name=str(data_file), backend="unsloth", output_dir=str(
        tmp_path / "run"), max_steps=2, save_steps=1, batch_size=8, learning_rate=1e-3, precision="fp32",
        lora_r=4, lora_alpha=8, lora_dropout=0.0, lora_target_modules=["q_proj", "v_proj"])
    create_rl_trainer(**settings).train()
    with pytest.raises(ResumeError, match="does not restore its adapter weights"):
        create_rl_trainer(**settings).train(resume_from_checkpoint=True)
