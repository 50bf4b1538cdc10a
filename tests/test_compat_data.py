"""AlignTune 0.x's data keywords on the training side (column_mapping, processing_fn, system_prompt, chat_template,
sliced splits, max_completion_length, lora_config, trainer.dataset_dict), each checked against an independent
computation on real rows, and their other documented DPO example scripts run with local model and data."""

from __future__ import annotations

import json

import datasets
import pytest
import yaml

from aligntune.core.backend_factory import create_rl_trainer
from aligntune.core.compat import translate_options
from aligntune.data import load_preference_data
from aligntune.errors import ConfigError, DataError

TINY = dict(learning_rate=1e-3, precision="fp32", save_steps=None, logging_steps=1)


@pytest.fixture(scope="module")
def orca_jsonl(pairs_jsonl, tmp_path_factory):
    """The pairs in argilla/distilabel-intel-orca-dpo-pairs' layout: system, input, chosen, rejected."""
    rows = [json.loads(line) for line in pairs_jsonl.read_text().splitlines()]
    path = tmp_path_factory.mktemp("orca") / "orca.jsonl"
    path.write_text("".join(json.dumps({"system": "You answer arithmetic.", "input": row["prompt"],
                                        "chosen": row["chosen"], "rejected": row["rejected"]}) + "\n"
                            for row in rows), encoding="utf-8")
    return path


def _raw(path, split="train"):
    return datasets.load_dataset("json", data_files=str(path), split=split)


# -- rows -------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("split", ["train[:50%]", "train[10:20]", "train[-5:]", "train[:1%]", "train[40:]"])
def test_a_sliced_split_of_a_local_file_picks_the_rows_datasets_picks(orca_jsonl, split):
    expected = _raw(orca_jsonl, split)["input"]
    data = load_preference_data(str(orca_jsonl), split=split, column_mapping={"input": "prompt"})
    assert data.dataset["prompt"] == expected and len(expected) > 0


def test_a_malformed_slice_is_refused_before_reading(orca_jsonl):
    with pytest.raises(ConfigError, match=r"split 'train\[:50%\+\]'.*train\[:50%\]"):
        load_preference_data(str(orca_jsonl), split="train[:50%+]")


def test_without_a_prompt_column_a_well_known_one_is_used_and_said(orca_jsonl):
    data = load_preference_data(str(orca_jsonl))
    assert data.dataset["prompt"] == _raw(orca_jsonl)["input"]
    assert data.report["column_mapping_inferred"] == {"input": "prompt"}  # in the run record, not only the log
    with pytest.raises(DataError, match=r"missing column\(s\) prompt.*set column_mapping=\{'input': 'prompt'\}"):
        load_preference_data(str(orca_jsonl), strict=True)


def test_column_mapping_renames_and_names_a_missing_column(orca_jsonl):
    data = load_preference_data(str(orca_jsonl), column_mapping={"input": "prompt"})
    assert data.report["column_mapping"] == {"input": "prompt"} and "column_mapping_inferred" not in data.report
    with pytest.raises(DataError, match=r"orca.jsonl, line 1: column_mapping renames 'question'.*its columns: chosen, "
                                        r"input, rejected, system"):
        load_preference_data(str(orca_jsonl), column_mapping={"question": "prompt"})
    with pytest.raises(ConfigError, match="column_mapping.*targets must be prompt, chosen, rejected.*e.g."):
        create_rl_trainer(model_name="m", dataset_name=str(orca_jsonl), column_mapping={"prompt": "input"})


def _with_system(row, *, label="System"):
    return {"prompt": f"{label}: {row['system']}\n{row['input']}", "chosen": row["chosen"],
            "rejected": row["rejected"]}


def _with_system_batched(batch):
    return {"prompt": [f"System: {s}\n{i}" for s, i in zip(batch["system"], batch["input"], strict=True)],
            "chosen": batch["chosen"], "rejected": batch["rejected"]}


def test_processing_fn_per_row_batched_and_by_name(orca_jsonl):
    raw = _raw(orca_jsonl)
    expected = [f"System: {s}\n{i}" for s, i in zip(raw["system"], raw["input"], strict=True)]
    assert load_preference_data(str(orca_jsonl), processing_fn=_with_system).dataset["prompt"] == expected
    batched = load_preference_data(str(orca_jsonl), processing_fn=_with_system_batched, processing_batched=True)
    assert batched.dataset["prompt"] == expected
    named = load_preference_data(str(orca_jsonl), processing_fn=f"{__name__}:_with_system",
                                 processing_fn_kwargs={"label": "Sys"})
    assert named.dataset["prompt"][0].startswith("Sys: ") and named.report["processing_fn"] == \
        f"{__name__}:_with_system"


def test_processing_fn_failures_name_the_row_and_the_function(orca_jsonl, tmp_path):
    def broken(row):
        return row["missing"]

    with pytest.raises(DataError, match=r"orca.jsonl, line 1: processing_fn .*broken failed: KeyError"):
        load_preference_data(str(orca_jsonl), processing_fn=broken)
    with pytest.raises(DataError, match="returned str; it must return the row as a dict"):
        load_preference_data(str(orca_jsonl), processing_fn=lambda row: "text")
    not_rows = tmp_path / "lists.jsonl"
    not_rows.write_text("[1, 2]\n", encoding="utf-8")
    for batched in (False, True):  # never handed to the function as something else
        with pytest.raises(DataError, match=r"lists.jsonl, line 1: expected an object .* for processing_fn, got list"):
            load_preference_data(str(not_rows), processing_fn=_with_system, processing_batched=batched)
    with pytest.raises(ConfigError, match="processing_fn 'nowhere.mod:fn': cannot import it"):
        load_preference_data(str(orca_jsonl), processing_fn="nowhere.mod:fn")
    with pytest.raises(ConfigError, match="'processing_fn_kwargs': only applies with processing_fn"):
        create_rl_trainer(model_name="m", dataset_name=str(orca_jsonl), processing_fn_kwargs={"a": 1})


def test_row_options_are_refused_for_an_adapter_that_reads_its_own_format(orca_jsonl):
    with pytest.raises(DataError, match="column_mapping work on the raw rows.*read by the 'hh-rlhf' dataset adapter"):
        load_preference_data(str(orca_jsonl), dataset_adapter="hh-rlhf", column_mapping={"input": "prompt"})


def test_system_prompt_makes_plain_rows_conversations_and_keeps_a_rows_own(pairs_jsonl, tmp_path):
    data = load_preference_data(str(pairs_jsonl), system_prompt="Be brief.", max_samples=4)
    raw = _raw(pairs_jsonl)
    assert data.dataset[0] == {
        "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": raw[0]["prompt"]}],
        "chosen": [{"role": "assistant", "content": raw[0]["chosen"]}],
        "rejected": [{"role": "assistant", "content": raw[0]["rejected"]}],
    }
    own = tmp_path / "chat.jsonl"
    rows = [{"prompt": [{"role": "system", "content": "Own."}, {"role": "user", "content": "hi"}],
             "chosen": [{"role": "assistant", "content": "hello"}], "rejected": [{"role": "assistant", "content": "no"}]},
            {"prompt": [{"role": "user", "content": "hey"}],
             "chosen": [{"role": "assistant", "content": "hello"}], "rejected": [{"role": "assistant", "content": "no"}]}]
    own.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    data = load_preference_data(str(own), system_prompt="Be brief.")
    assert [row["prompt"][0]["content"] for row in data.dataset] == ["Own.", "Be brief."]
    assert data.report["system_prompt"]["kept_own_system_message"] == 1
    assert data.report["system_prompt"]["applied"] == 1


# -- training ---------------------------------------------------------------------------------------------------------

TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}<assistant>{% endif %}")


def test_system_prompt_and_chat_template_reach_the_tokens_and_the_saved_tokenizer(tiny_model, pairs_jsonl, tmp_path):
    out = tmp_path / "run"
    trainer = create_rl_trainer(model_name=str(tiny_model), dataset_name=str(pairs_jsonl), system_prompt="Be brief.",
                                chat_template=TEMPLATE, max_steps=1, batch_size=4, max_samples=8,
                                output_dir=str(out), **TINY)
    tokenizer = trainer.tokenizer
    first = trainer.dataset_dict["train"][0]
    expected = tokenizer.apply_chat_template(first["prompt"], tokenize=True, add_generation_prompt=True,
                                             return_dict=False)
    assert trainer.train_dataset[0]["prompt_ids"] == expected
    assert tokenizer.decode(expected).startswith("<system>Be brief.\n<user>")
    trainer.train()
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(out).chat_template == TEMPLATE  # evaluation renders as training did
    record = json.loads((out / "aligntune_run.json").read_text())
    assert record["config"]["system_prompt"] == "Be brief."
    assert record["data"]["train"]["adapter"]["system_prompt"]["applied"] == 8
    # Evaluation of the run scores the pairs as they were trained: with the system prompt from its record.
    from aligntune.eval.runner import EvalConfig, run_eval

    results = run_eval(EvalConfig(model_path=str(out), output_dir=str(tmp_path / "eval"), device="cpu",
                                  metrics=["reward_margin"], dataset_name=str(pairs_jsonl), split="train",
                                  max_samples=4))
    written = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert written["plan"]["system_prompt"] == "Be brief." and written["data"]["system_prompt"]["applied"] == 4
    assert results["total"] == 4


def test_max_completion_length_keeps_the_start_of_each_completion_and_counts(tiny_model, pairs_jsonl, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    raw = _raw(pairs_jsonl)
    full = [len(tokenizer(p + c + tokenizer.eos_token)["input_ids"]) - len(tokenizer(p)["input_ids"])
            for p, c in zip(raw["prompt"], raw["chosen"], strict=True)]
    limit = 1
    trainer = create_rl_trainer(model_name=str(tiny_model), dataset_name=str(pairs_jsonl), max_completion_length=limit,
                                max_steps=1, batch_size=4, output_dir=str(tmp_path / "run"), **TINY)
    chosen = trainer.train_dataset["chosen_ids"]
    assert [len(ids) for ids in chosen] == [min(n, limit) for n in full]
    report = trainer.tokenization_reports["train"]
    rejected_full = [len(tokenizer(p + r + tokenizer.eos_token)["input_ids"]) - len(tokenizer(p)["input_ids"])
                     for p, r in zip(raw["prompt"], raw["rejected"], strict=True)]
    cut = sum(max(c, r) > limit for c, r in zip(full, rejected_full, strict=True))
    assert report["completion_cut_to_max_completion_length"] == cut > 0
    with pytest.raises(ConfigError, match="'max_completion_length': must be smaller than max_seq_length"):
        create_rl_trainer(model_name="m", dataset_name="d", max_completion_length=512)


@pytest.mark.parametrize(
    ("theirs", "ours"),
    [
        ({"lora_config": {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": ["q_proj"], "bias": "none",
                          "task_type": "CAUSAL_LM"}},
         {"lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "lora_target_modules": ["q_proj"], "use_lora": True}),
        ({"max_target_length": 64}, {"max_completion_length": 64}),
        ({"max_completion_length": 64}, {"max_completion_length": 64}),
        ({"chat_template": "auto"}, {"chat_template": None}),
        ({"column_mapping": {"question": "prompt"}}, {"column_mapping": {"question": "prompt"}}),
    ],
)
def test_their_data_and_lora_keywords_map_onto_ours(theirs, ours):
    translated = translate_options({"model_name": "m", "dataset_name": "d", **theirs}).options
    assert translated == {"model_name": "m", "dataset_name": "d", **ours}


@pytest.mark.parametrize(
    ("theirs", "message"),
    [
        ({"lora_config": {"r": 8, "bias": "all"}}, "lora_config.bias='all' is not supported"),
        ({"lora_config": {"r": 8}, "lora_r": 4}, "lora_config.r=8 and lora_r=4 disagree"),
        ({"lora_config": "r=8"}, "lora_config: expected a mapping"),
    ],
)
def test_lora_config_values_without_a_meaning_here_are_refused(theirs, message):
    with pytest.raises(ConfigError, match=message):
        translate_options({"model_name": "m", "dataset_name": "d", **theirs})


def test_processing_fn_by_name_in_yaml_trains_and_is_recorded(tiny_model, orca_jsonl, tmp_path):
    config = tmp_path / "dpo.yaml"
    config.write_text(yaml.safe_dump({
        "model_name": str(tiny_model), "dataset_name": str(orca_jsonl), "processing_fn": f"{__name__}:_with_system",
        "max_steps": 1, "batch_size": 4, "output_dir": str(tmp_path / "run"), **TINY}), encoding="utf-8")
    trainer = create_rl_trainer(config=str(config))
    trainer.train()
    record = json.loads((tmp_path / "run" / "aligntune_run.json").read_text())
    assert record["config"]["processing_fn"] == f"{__name__}:_with_system"
    assert record["data"]["train"]["adapter"]["processing_fn"] == f"{__name__}:_with_system"


# -- their other DPO example scripts ------------------------------------------------------------------------------------

def test_their_gemma_hh_rlhf_example_with_a_sliced_split_and_a_json_dump_of_the_result(tiny_model, pairs_jsonl,
                                                                                         tmp_path):
    """examples/dpo_anthropic_gemma_2_2b.py: `split="train[:0001%]"`, `max_steps=-1` with `num_epochs=3`, their
    reward list (ignored by DPO there too), and `json.dump` of a dict holding the training result."""
    from aligntune.eval.runner import EvalConfig, run_eval

    output_dir = str(tmp_path / "dpo_trl_coherence_safety")
    trainer = create_rl_trainer(
        model_name=str(tiny_model), dataset_name=str(pairs_jsonl), algorithm="dpo", split="train[:0025%]",
        backend="trl", max_steps=-1, num_epochs=3, batch_size=4, learning_rate=5e-6, max_seq_length=64,
        quantization={"load_in_4bit": False, "bnb_4bit_compute_dtype": "float16"},  # theirs: True (CUDA GPU)
        output_dir=output_dir, loggers=["tensorboard"],
        rewards=[{"type": "coherence", "weight": 0.4, "params": {}}],
        precision="fp32",  # theirs: fp16 (GPU)
    )
    training_results = trainer.train()
    assert training_results.get("total_steps") == 3 * (16 // 4)  # 25% of 64 pairs, 3 epochs: no silent cap
    results = {"model": str(tiny_model), "training": training_results}
    trained = run_eval(EvalConfig(
        model_path=training_results["model_path"], output_dir=f"{output_dir}/eval_results_trained", device="cpu",
        task_type="dpo", data_task_type="dpo", metrics=["kl_divergence", "win_rate", "reward_margin"],
        reference_model_path=str(tiny_model), dataset_name=str(pairs_jsonl), split="train[48:]", max_length=64,
        temperature=0.0, batch_size=8, max_samples=16, use_lora=False))
    results["comparison_metrics"] = {m: trained.get(m) for m in ["win_rate", "win_count", "reward_margin"]}
    saved = tmp_path / "comprehensive_results.json"
    saved.write_text(json.dumps(results, indent=2), encoding="utf-8")  # their last step: must not raise
    assert json.loads(saved.read_text())["comparison_metrics"]["reward_margin"] == trained["reward_margin"]


def test_their_phi2_orca_example_with_lora_config_and_max_completion_length(tiny_model, orca_jsonl, tmp_path):
    """examples/unsloth_dpo_1.py and unsloth_dpo_intel_orca_phi_chat.py: the orca layout (system, input, chosen,
    rejected), `split="train[:50%]"`, `max_completion_length`, a `lora_config` dict, trainer settings, then base and
    trained evaluation on the held-out `train[N:]` rows with `use_lora=True, base_model=...`. Swapped: the model,
    data, `backend="unsloth"` and 4-bit (a CUDA GPU), `optim="paged_adamw_32bit"` (bitsandbytes on a GPU)."""
    from aligntune.eval.runner import EvalConfig, run_eval

    model_name, dataset = str(tiny_model), str(orca_jsonl)
    output_dir = str(tmp_path / "phi2_dpo_alignment")
    trainer = create_rl_trainer(
        model_name=model_name, dataset_name=dataset, algorithm="dpo", backend="trl",  # theirs: unsloth
        split="train[:50%]", num_epochs=1, batch_size=4, learning_rate=5e-5, gradient_accumulation_steps=2,
        max_seq_length=48, max_prompt_length=32, max_completion_length=8,
        quantization={"load_in_4bit": False, "bnb_4bit_compute_dtype": "float16", "bnb_4bit_quant_type": "nf4",
                      "bnb_4bit_use_double_quant": True},
        precision="fp32",  # theirs: bf16
        use_lora=True,
        lora_config={"r": 16, "lora_alpha": 16, "lora_dropout": 0.05,
                     "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],  # theirs: phi-2's "dense" too
                     "bias": "none", "task_type": "CAUSAL_LM"},
        beta=0.1, output_dir=output_dir, save_steps=10, logging_steps=1, eval_steps=20,
        max_steps=6,  # theirs: 500 (as in transformers, max_steps wins over num_epochs)
        optim="adamw_torch",  # theirs: paged_adamw_32bit
        warmup_steps=100, lr_scheduler_type="cosine", seed=42,
    )
    assert trainer.config.lora_r == 16 and trainer.config.lora_alpha == 16
    training_results = trainer.train()
    assert training_results.get("total_steps") == 6  # 32 pairs / (4 x 2) = 4 steps per epoch: max_steps wins
    assert (tmp_path / "phi2_dpo_alignment" / "adapter_config.json").is_file()
    adapter = json.loads((tmp_path / "phi2_dpo_alignment" / "adapter_config.json").read_text())
    assert adapter["r"] == 16 and adapter["lora_alpha"] == 16
    assert sorted(trainer.dataset_dict) == ["train"] and len(trainer.dataset_dict["train"]) == 32
    common = dict(device="cpu", task_type="dpo", data_task_type="dpo",
                  metrics=["reward_margin", "preference_accuracy", "win_rate"], dataset_name=dataset,
                  split="train[40:]", column_mapping={"input": "prompt"}, max_length=48, temperature=0.0,
                  batch_size=2, max_samples=100, trust_remote_code=True)
    base = run_eval(EvalConfig(model_path=model_name, output_dir=f"{output_dir}/eval_results_base", use_lora=False,
                               **common), None)
    trained = run_eval(EvalConfig(model_path=training_results["model_path"],
                                  output_dir=f"{output_dir}/eval_results_trained", reference_model_path=model_name,
                                  use_lora=True, base_model=model_name, **common), None)
    assert base.get("total") == trained.get("total") == 24  # the held-out rows 40..63
    assert base["reward_margin"] == pytest.approx(0.0, abs=1e-6)
    assert trained["reward_margin"] != pytest.approx(0.0, abs=1e-6)
    # Their first version passed trainer.dataset_dict with split "test": it holds no such split, and says so.
    with pytest.raises(ConfigError, match="without a 'test' split \\(it has: train\\)"):
        run_eval(EvalConfig(model_path=model_name, output_dir=str(tmp_path / "e"), split="test", device="cpu",
                            metrics=["reward_margin"]), trainer.dataset_dict)
