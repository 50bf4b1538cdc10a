"""`streaming: true`: the same rows, checked the same way, read as training consumes them; pairs counted as they
pass; resume continues the stream where the checkpoint left it."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from aligntune.core.backend_factory import create_rl_trainer
from aligntune.data import load_preference_data
from aligntune.errors import ConfigError, DataError
from conftest import ARITHMETIC

FAST = dict(batch_size=8, learning_rate=1e-3, precision="fp32", seed=5, logging_steps=1)


@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
def test_a_stream_yields_the_rows_of_the_whole_load_in_order(suffix, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = ARITHMETIC[:20] + [{"prompt": "p", "chosen": "same", "rejected": "same"}] + ARITHMETIC[20:30]
    path = tmp_path / f"pairs.{suffix}"
    if suffix == "jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    whole = load_preference_data(str(path))
    stream = load_preference_data(str(path), streaming=True)
    assert stream.report_now()["read"] == 0  # nothing is read up front
    assert list(stream.dataset) == whole.dataset.to_list()
    assert stream.report_now() == whole.report_now() | {"streaming": True}  # the same counts, once read


def _mixed_lengths(tmp_path):
    rows = [{"prompt": "Q: what is 1 plus 1? A:" if i % 4 else "Q: " + "what is one plus one? " * 6 + "A:",
             "chosen": " 2", "rejected": " 3"} for i in range(96)]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_streamed_training_counts_every_pair_it_reads(tiny_model, tmp_path):
    out = tmp_path / "run"
    trainer = create_rl_trainer(model_name=str(tiny_model), dataset_name=str(_mixed_lengths(tmp_path)),
                                output_dir=str(out), streaming=True, max_steps=4, save_steps=None, max_seq_length=32,
                                **FAST)
    trainer.train()
    assert trainer.state.global_step == 4
    record = json.loads((out / "aligntune_run.json").read_text())
    tokenization, adapter = record["data"]["train"]["tokenization"], record["data"]["train"]["adapter"]
    assert adapter["streaming"] is True and adapter["read"] >= tokenization["pairs_in"] >= 32
    dropped = tokenization["dropped"]["prompt_fills_max_seq_length"]
    assert tokenization["pairs_in"] == tokenization["pairs_kept"] + dropped
    assert dropped == (tokenization["pairs_in"] + 3) // 4  # every fourth row, from the first, has the long prompt
    assert tokenization["pairs_kept"] >= 32  # the four steps trained on kept pairs only


def test_a_streamed_run_resumes_bit_exactly(tiny_model, pairs_jsonl, tmp_path):
    common = dict(model_name=str(tiny_model), dataset_name=str(pairs_jsonl), streaming=True, max_steps=6,
                  save_steps=2, **FAST)
    create_rl_trainer(output_dir=str(tmp_path / "straight"), **common).train()
    crashed = tmp_path / "crashed"
    create_rl_trainer(output_dir=str(crashed), **common).train()
    shutil.rmtree(crashed / "checkpoint-6")
    (crashed / "model.safetensors").unlink()
    create_rl_trainer(output_dir=str(crashed), resume_from_checkpoint=True, **common).train()
    ours, reference = load_file(crashed / "model.safetensors"), load_file(tmp_path / "straight" / "model.safetensors")
    assert all(torch.equal(ours[name], reference[name]) for name in reference)
    record = json.loads((crashed / "aligntune_run.json").read_text())
    assert record["run"]["resumed_from"]["step"] == 4 and record["run"]["fingerprint"]


def test_streaming_settings_that_cannot_work_are_refused(tiny_model, pairs_jsonl):
    base = dict(model_name=str(tiny_model), dataset_name=str(pairs_jsonl), streaming=True)
    with pytest.raises(ConfigError, match="option 'streaming': needs max_steps"):
        create_rl_trainer(**base)
    with pytest.raises(ConfigError, match="cannot be combined with precompute_ref_log_probs"):
        create_rl_trainer(**base, max_steps=2, precompute_ref_log_probs=True)


def test_an_adapter_that_cannot_stream_says_so(shared_data):
    with pytest.raises(DataError, match="dataset adapter 'hh-rlhf' cannot stream"):
        load_preference_data("Anthropic/hh-rlhf", data_files=str(shared_data / "hh-rlhf"), split="test",
                             streaming=True)
