"""aligntune's batched tokenization produces exactly TRL's token ids, on real hh-rlhf text."""

from __future__ import annotations

import datasets
from transformers import AutoTokenizer

from aligntune.core.backend_factory import create_rl_trainer
from aligntune.data import load_preference_dataset


def test_batched_tokenization_equals_trls(shared_data, tiny_model, tmp_path):
    from trl import DPOConfig, DPOTrainer

    data_dir = str(shared_data / "hh-rlhf")
    ours = create_rl_trainer(model_name=str(tiny_model), dataset_name="Anthropic/hh-rlhf", data_files=data_dir,
                             split="test", dataset_config="helpful-online", max_samples=300, max_seq_length=1024,
                             output_dir=str(tmp_path / "a"), max_steps=1, save_steps=None, precision="fp32")
    rows = load_preference_dataset("Anthropic/hh-rlhf", data_files=data_dir, split="test",
                                   dataset_config="helpful-online", max_samples=300)
    plain = DPOTrainer(model=str(tiny_model), train_dataset=datasets.Dataset.from_list(rows.to_list()),
                       processing_class=AutoTokenizer.from_pretrained(tiny_model),
                       args=DPOConfig(output_dir=str(tmp_path / "b"), use_cpu=True, report_to="none", max_length=1024,
                                      bf16=False))
    assert len(ours.train_dataset) == len(plain.train_dataset) > 150  # the same long-prompt pairs were dropped
    for key in ("prompt_ids", "chosen_ids", "rejected_ids"):
        assert ours.train_dataset[key] == plain.train_dataset[key], key
