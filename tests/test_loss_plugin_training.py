"""A third-party loss installed from its own wheel (the example plugin) is listed and trains by name."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from aligntune.core.backend_factory import create_rl_trainer


def test_example_loss_plugin_is_listed_and_trains_by_name(tiny_model, pairs_jsonl, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "aligntune", "plugins", "list", "--json"], capture_output=True,
                          text=True, timeout=120)
    records = {r["name"]: r for r in json.loads(proc.stdout)}
    assert records["aligntune-loss-dpop"]["provides"]["losses"] == ["dpop"]

    trainer = create_rl_trainer(model_name=str(tiny_model), dataset_name=str(pairs_jsonl), output_dir=str(tmp_path),
                                loss_type="dpop", loss_params={"dpop_lambda": 5.0}, batch_size=8, max_steps=3,
                                learning_rate=1e-2, logging_steps=1, save_steps=None, precision="fp32")
    trainer.train()
    losses = [entry["loss"] for entry in trainer.log_history if "loss" in entry]
    assert losses[0] == pytest.approx(0.693147, abs=1e-5)  # Δ = 0 and no penalty at the first step: log 2
    assert len(set(losses)) > 1
    record = json.loads((tmp_path / "aligntune_run.json").read_text())
    assert record["loss_type"] == "dpop" and record["loss_params"] == {"dpop_lambda": 5.0}
