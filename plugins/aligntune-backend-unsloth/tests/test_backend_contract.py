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
    results = check_backend_contract("unsloth", model_dir=model_dir, data_file=data_file, workdir=tmp_path / "work",
                                     options=options)
    assert [result.name for result in results if result.passed] == [result.name for result in results]
