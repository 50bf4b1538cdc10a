"""The core's tokenize_pair/collate_pairs reproduce what the TRL backend trains on (standard and chat data)."""

from __future__ import annotations

import json

import torch

from aligntune.core.backend_factory import create_rl_trainer
from aligntune.modeling import collate_pairs, completion_logps, tokenize_pair
from conftest import ARITHMETIC

CHAT = [
    {
        "prompt": [{"role": "user", "content": f"what is {a} plus {b}?"}],
        "chosen": [{"role": "assistant", "content": f"{a + b}"}],
        "rejected": [{"role": "assistant", "content": f"{a + b + 1}"}],
    }
    for a in range(3)
    for b in range(3)
]


def _trainer(model, data, out):
    return create_rl_trainer(model_name=str(model), dataset_name=str(data), output_dir=str(out), max_steps=1,
                             batch_size=4, save_steps=None, precision="fp32")


def test_standard_rows_tokenize_and_score_like_training(tiny_model, pairs_jsonl, tmp_path):
    trainer = _trainer(tiny_model, pairs_jsonl, tmp_path)
    tokenizer = trainer.processing_class
    ours = [tokenize_pair(tokenizer, row) for row in ARITHMETIC[:6]]
    theirs = [{k: trainer.train_dataset[i][k] for k in ("prompt_ids", "chosen_ids", "rejected_ids")} for i in range(6)]
    assert ours == theirs
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    batch_ours = collate_pairs(ours, pad_token_id=tokenizer.pad_token_id, max_length=512)
    batch_trl = DataCollatorForPreference(pad_token_id=tokenizer.pad_token_id, max_length=512)(theirs)
    for key in ("input_ids", "attention_mask", "completion_mask"):
        assert torch.equal(batch_ours[key], batch_trl[key]), key
    with torch.no_grad():
        logps = completion_logps(trainer.model, **batch_ours).logps
    assert torch.isfinite(logps).all() and (logps < 0).all()


def test_conversational_rows_tokenize_like_training(tiny_model, tmp_path):
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in CHAT), encoding="utf-8")
    trainer = _trainer(tiny_model, data, tmp_path / "out")
    tokenizer = trainer.processing_class
    for i, row in enumerate(CHAT):
        expected = {k: trainer.train_dataset[i][k] for k in ("prompt_ids", "chosen_ids", "rejected_ids")}
        assert tokenize_pair(tokenizer, row) == expected
