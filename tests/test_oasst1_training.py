"""Conversational training on real oasst1 pairs (oasst1 + TRL plugins, the tiny model's chat template)."""

from __future__ import annotations

from aligntune.core.backend_factory import create_rl_trainer


def test_training_on_real_oasst1_pairs(shared_data, tiny_model, tmp_path):
    trainer = create_rl_trainer(
        model_name=str(tiny_model), dataset_name="OpenAssistant/oasst1",
        data_files=str(shared_data / "oasst1" / "oasst1-validation-en.messages.jsonl"), max_samples=64,
        output_dir=str(tmp_path), batch_size=8, max_steps=4, learning_rate=1e-3, max_seq_length=256,
        max_prompt_length=160, logging_steps=1, save_steps=None, precision="fp32", gradient_checkpointing=False,
        dataset_options={"pairs": "all"},
    )
    assert trainer.data_reports["train"]["kept"] == 64
    row = trainer.train_dataset[0]
    # Rendered with the chat template: the assistant's completion follows the generation prompt.
    tokenizer = trainer.processing_class
    assert "<|assistant|>" in tokenizer.decode(row["prompt_ids"][-3:])
    trainer.train()
    losses = [entry["loss"] for entry in trainer.log_history if "loss" in entry]
    assert len(losses) == 4 and all(loss > 0 for loss in losses)
