"""A tiny model trained on a few hundred real hh-rlhf pairs through create_rl_trainer (hh-rlhf + TRL plugins)."""

from __future__ import annotations

import json

import pytest

from aligntune.core.backend_factory import create_rl_trainer


def test_training_on_real_hh_rlhf_pairs(shared_data, tiny_model, tmp_path):
    out = tmp_path / "hh"
    trainer = create_rl_trainer(
        model_name=str(tiny_model), dataset_name="Anthropic/hh-rlhf", data_files=str(shared_data / "hh-rlhf"),
        split="test", dataset_config="helpful-base", max_samples=256, output_dir=str(out), batch_size=16,
        num_epochs=2, learning_rate=2e-3, beta=0.1, max_seq_length=192, max_prompt_length=128, logging_steps=4,
        save_steps=None, precision="fp32", gradient_checkpointing=False,
    )
    assert trainer.data_reports["train"]["kept"] == 256
    assert len(trainer.train_dataset) == 256  # long prompts were shortened, not dropped
    assert max(len(row["prompt_ids"]) for row in trainer.train_dataset) == 128
    trainer.train()
    history = [entry for entry in trainer.log_history if "rewards/accuracies" in entry and "loss" in entry]
    assert trainer.state.global_step == 32
    # Two passes over the same pairs: the policy learns to prefer the chosen replies it trains on.
    assert history[-1]["rewards/margins"] > history[0]["rewards/margins"]
    assert history[-1]["loss"] < history[0]["loss"]
    record = json.loads((out / "aligntune_run.json").read_text())
    assert record["dataset"]["name"] == "Anthropic/hh-rlhf" and record["dataset"]["config"] == "helpful-base"
