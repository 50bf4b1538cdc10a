"""Dataset mixtures: several datasets, each through its own adapter, weighted, recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from aligntune.core.config import TrainConfig
from aligntune.data import load_preference_data
from aligntune.data.mixture import load_mixture
from aligntune.errors import ConfigError, DataError


def _mixture(shared_data, pairs_jsonl, *, seed=0, local_weight=1.5):
    entries = [
        {"name": "Anthropic/hh-rlhf", "config": "helpful-base", "split": "test",
         "data_files": str(shared_data / "hh-rlhf"), "max_samples": 40, "weight": 0.5},
        {"name": str(pairs_jsonl), "max_samples": 20, "weight": local_weight},
    ]
    return load_mixture(entries, seed=seed, load=load_preference_data)


def test_weights_scale_each_dataset_through_its_own_adapter(shared_data, pairs_jsonl):
    data = _mixture(shared_data, pairs_jsonl)
    hh = load_preference_data("Anthropic/hh-rlhf", split="test", dataset_config="helpful-base",
                              data_files=str(shared_data / "hh-rlhf"), max_samples=40).dataset
    local = load_preference_data(str(pairs_jsonl), max_samples=20).dataset
    rows = [json.dumps(row, sort_keys=True) for row in data.dataset]
    assert len(rows) == 20 + 30
    hh_rows = {json.dumps(row, sort_keys=True) for row in hh.select_columns(["prompt", "chosen", "rejected"])}
    local_rows = [json.dumps(row, sort_keys=True) for row in local.select_columns(["prompt", "chosen", "rejected"])]
    counts = Counter(rows)
    # weight 0.5 of 40 hh-rlhf pairs (its adapter's split of the conversations): 20 distinct of them, once each
    assert sum(1 for row in rows if row in hh_rows) == 20 and all(counts[row] == 1 for row in rows if row in hh_rows)
    # weight 1.5 of 20 local pairs: each once, and 10 of them twice
    assert sorted(counts[row] for row in local_rows) == [1] * 10 + [2] * 10
    shares = [(entry["name"], entry["pairs_loaded"], entry["pairs_used"], entry["share"])
              for entry in data.report["mixture"]]
    assert shares == [("Anthropic/hh-rlhf", 40, 20, 0.4), (str(pairs_jsonl), 20, 30, 0.6)]
    assert data.report["mixture"][0]["report"]["adapter"]["name"] == "hh-rlhf"
    # the draw follows the seed
    assert [json.dumps(r, sort_keys=True) for r in _mixture(shared_data, pairs_jsonl, seed=0).dataset] == rows
    assert [json.dumps(r, sort_keys=True) for r in _mixture(shared_data, pairs_jsonl, seed=1).dataset] != rows


def test_a_mixture_trains_and_is_recorded(shared_data, pairs_jsonl, tiny_model, tmp_path):
    out = tmp_path / "run"
    config = tmp_path / "mix.yaml"
    config.write_text(f"""model_name: {tiny_model}
datasets:
  - {{name: Anthropic/hh-rlhf, config: helpful-base, split: test, data_files: {shared_data / 'hh-rlhf'},
     max_samples: 40, weight: 0.5}}
  - {{name: {pairs_jsonl}, max_samples: 20, weight: 1.5}}
output_dir: {out}
max_steps: 2
batch_size: 4
precision: fp32
max_seq_length: 512
save_steps: null
""", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "aligntune", "train", str(config)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "dataset mixture" in proc.stderr
    record = json.loads((out / "aligntune_run.json").read_text())
    assert record["dataset"]["name"] == f"mixture: Anthropic/hh-rlhf + {pairs_jsonl}"
    assert [entry["weight"] for entry in record["datasets"]] == [0.5, 1.5]
    mixture = record["data"]["train"]["adapter"]["mixture"]
    assert [entry["pairs_used"] for entry in mixture] == [20, 30]
    tokenized = record["data"]["train"]["tokenization"]  # the whole mixture is what tokenization saw
    assert tokenized["pairs_in"] == 50 and tokenized["pairs_kept"] + sum(tokenized["dropped"].values()) == 50


def test_mixture_mistakes_are_clear(shared_data, pairs_jsonl):
    with pytest.raises(ConfigError, match=r"mix.yaml, line 2, key 'datasets': entry 1 \(b.jsonl\) has unknown key"):
        TrainConfig.from_mapping({"model_name": "m", "datasets": [{"name": "a.jsonl"}, {"name": "b.jsonl",
                                                                                      "wieght": 2}]},
                                 source="mix.yaml", lines={"datasets": 2})
    with pytest.raises(ConfigError, match="either dataset_name .* or datasets"):
        TrainConfig.from_mapping({"model_name": "m", "dataset_name": "x.jsonl", "datasets": [{"name": "a.jsonl"}]})
    with pytest.raises(ConfigError, match="streaming is not offered for mixtures"):
        TrainConfig.from_mapping({"model_name": "m", "datasets": [{"name": "a.jsonl"}], "streaming": True,
                                  "max_steps": 3})
    entries = [{"name": "OpenAssistant/oasst1", "data_files": str(shared_data / "oasst1" /
                                                                  "oasst1-validation-en.messages.jsonl"),
                "max_samples": 8},
               {"name": str(pairs_jsonl), "max_samples": 8}]
    with pytest.raises(DataError, match=r"entry 0 \(.*pairs.jsonl\): weight 0.01 of its 8 pairs gives none"):
        load_mixture([{"name": str(pairs_jsonl), "max_samples": 8, "weight": 0.01}], seed=0, load=load_preference_data)
    with pytest.raises(DataError, match="mixes plain-text and conversational pairs.*system_prompt"):
        load_mixture(entries, seed=0, load=load_preference_data)
    # ...and system_prompt (a run option shared by every entry) makes the plain rows conversational
    data = load_mixture(entries, seed=0, load=lambda name, **kw: load_preference_data(name, system_prompt="Be kind.",
                                                                                      **kw))
    assert len(data.dataset) == 16 and all(isinstance(row["prompt"], list) for row in data.dataset)


def test_alignTune_0x_nested_config_with_several_datasets_is_a_mixture(pairs_jsonl):
    from aligntune.core.compat import translate_options

    options = translate_options({"model": {"name_or_path": "m"}, "datasets": [
        {"name": str(pairs_jsonl), "max_samples": 4}, {"name": str(pairs_jsonl), "config_name": None, "weight": 2}]}
    ).options
    config = TrainConfig.from_mapping(options)
    assert config.dataset_name is None and [entry.get("weight") for entry in config.datasets] == [None, 2]
