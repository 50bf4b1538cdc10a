"""Coming from AlignTune 0.x: its create_rl_trainer keywords, nested YAML, flag-style CLI and return values work
(or are refused with what to write instead), on the tiny local model."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from aligntune.core.backend_factory import create_rl_trainer, get_backend_status, list_backends
from aligntune.core.compat import translate_options
from aligntune.errors import ConfigError

TINY = dict(learning_rate=1e-3, precision="fp32", save_steps=None, logging_steps=1)


@pytest.mark.parametrize(
    ("theirs", "ours"),
    [
        ({"use_peft": True}, {"use_lora": True}),
        ({"num_train_epochs": 2}, {"num_epochs": 2}),
        ({"config_name": "helpful-base"}, {"dataset_config": "helpful-base"}),
        ({"per_device_train_batch_size": 8}, {"batch_size": 8}),
        ({"max_length": 256}, {"max_seq_length": 256}),
        ({"use_gradient_checkpointing": False}, {"gradient_checkpointing": False}),
        ({"algorithm": "DPO"}, {"algorithm": "dpo"}),
        ({"backend": "auto"}, {"backend": "trl"}),
        ({"max_steps": -1}, {"max_steps": None}),
        ({"fp16": True}, {"precision": "fp16"}),
        ({"quantization": {"load_in_4bit": True}}, {"load_in_4bit": True}),
        ({"warmup_ratio": 0.1}, {"training_args": {"warmup_steps": 0.1}}),
        ({"lr_scheduler": "cosine"}, {"training_args": {"lr_scheduler_type": "cosine"}}),
        ({"eval_strategy": "steps", "save_strategy": "no"},
         {"training_args": {"eval_strategy": "steps", "save_strategy": "no"}}),
        ({"trust_remote_code": True, "device_map": "auto"},
         {"training_args": {"model_init_kwargs": {"trust_remote_code": True}}}),
        ({"rewards": [{"type": "safety"}], "loggers": ["tensorboard"]}, {}),  # ignored by DPO there too (warned)
        ({"discopop_tau": 0.1, "loss_type": "discopop"}, {"loss_type": "discopop", "loss_params": {"discopop_tau": 0.1}}),
        ({"model_init_kwargs": {"attn_implementation": "eager"}, "disable_dropout": True},
         {"training_args": {"disable_dropout": True, "model_init_kwargs": {"attn_implementation": "eager"}}}),
        # TRL's LD-DPO and WPO options are aligntune options of the same name (computed in aligntune's loss path).
        ({"ld_alpha": 0.5, "use_weighting": True}, {"ld_alpha": 0.5, "use_weighting": True}),
        ({"padding_free": True}, {"packing": True}),
        # TRL < 1.0's rpo_alpha is, since TRL 1.0, the sft loss with that weight.
        ({"rpo_alpha": 0.5}, {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 0.5]}),
        ({"rpo_alpha": 1.0, "loss_type": ["ipo", "hinge"], "loss_weights": [1.0, 2.0]},
         {"loss_type": ["ipo", "hinge", "sft"], "loss_weights": [1.0, 2.0, 1.0]}),
        ({"training_args": {"rpo_alpha": 0.2, "warmup_steps": 3}, "loss_type": "ipo"},
         {"loss_type": ["ipo", "sft"], "loss_weights": [1.0, 0.2], "training_args": {"warmup_steps": 3}}),
        ({"rpo_alpha": None}, {}),
    ],
)
def test_their_keywords_map_onto_ours(theirs, ours):
    translated = translate_options({"model_name": "m", "dataset_name": "d", **theirs}).options
    assert translated == {"model_name": "m", "dataset_name": "d", **ours}


@pytest.mark.parametrize(
    ("theirs", "message"),
    [
        ({"algorithm": "ppo"}, "aligntune trains the DPO family only"),
        ({"field_mappings": {"question": "prompt"}}, "use column_mapping="),
        ({"val_split_ratio": 0.1}, "give held-out data: eval_dataset_name"),
        ({"max_eval_samples": 10}, "max_samples applies to both"),
        ({"use_peft": True, "use_lora": True}, "'use_peft' and 'use_lora' are the same option"),
        ({"quantization": {"load_in_8bit": True}}, "load_in_8bit not supported"),
        ({"dataset_weight": 0.5}, "give a mixture: datasets:"),
        ({"f_divergence_type": "js_divergence"}, "f-divergence DPO is not among aligntune's losses"),
        ({"model_init_kwargs": "eager"}, "model_init_kwargs: expected a mapping"),
        # The message names where the refused name comes from.
        ({"use_dora": True}, r"option 'use_dora' \(TRL ModelConfig\) is not supported: DoRA is not offered"),
        ({"use_logits_to_keep": True}, r"option 'use_logits_to_keep' \(TRL DPOConfig, before 1.x\) is not supported"),
        ({"percent": 10}, r"option 'percent' \(AlignTune 0.x\) is not supported"),
        ({"rpo_alpha": 0.5, "loss_type": ["sigmoid", "sft"]}, "loss_type already lists it"),
        ({"rpo_alpha": 0.5, "loss_type": ["sigmoid", "ipo"], "loss_weights": [1.0]}, "one weight per loss"),
        ({"rpo_alpha": -1}, "rpo_alpha must be a number >= 0"),
        ({"generate_during_eval": True}, "aligntune eval"),
    ],
)
def test_names_without_a_meaning_here_say_what_to_write_instead(theirs, message):
    with pytest.raises(ConfigError, match=message):
        translate_options({"model_name": "m", "dataset_name": "d", **theirs})


def test_defaults_that_differ_from_trl_are_announced_when_left_unset():
    from structlog.testing import capture_logs

    from aligntune.core.compat import announce_defaults

    # A TRL config that leaves the batch size and length unset trains at aligntune's 4 and 512, said at start-up.
    translation = translate_options({"model_name_or_path": "m", "dataset_name": "d", "learning_rate": 5e-7})
    with capture_logs() as logs:
        announce_defaults(translation)
    (event,) = logs
    assert event["log_level"] == "warning" and event["renamed"] == ["model_name_or_path"]
    assert "TRL: per_device_train_batch_size 8" in event["batch_size"]
    assert "TRL: max_length 1024" in event["max_seq_length"] and "TRL: false" in event["precompute_ref_log_probs"]
    assert "learning_rate" not in event  # set in the config: nothing to announce
    # Set, they are not announced.
    translation = translate_options({"model_name_or_path": "m", "dataset_name": "d", "per_device_train_batch_size": 8,
                                     "max_length": 1024})
    with capture_logs() as logs:
        announce_defaults(translation)
    assert "batch_size" not in logs[0] and "max_seq_length" not in logs[0]


def test_rpo_alpha_is_said_to_become_the_sft_loss():
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        translate_options({"model_name": "m", "dataset_name": "d", "rpo_alpha": 0.5})
    (event,) = [entry for entry in logs if "rpo_alpha" in entry["event"]]
    assert event["rpo_alpha"] == 0.5 and event["loss_type"] == ["sigmoid", "sft"]
    assert event["loss_weights"] == [1.0, 0.5]


NESTED = {
    "algo": "dpo",
    "model": {"name_or_path": None, "use_peft": True, "lora_r": 4, "precision": "fp32", "max_seq_length": 64},
    "datasets": [{"name": None, "split": "train", "max_samples": 32}],
    "train": {"epochs": 1, "per_device_batch_size": 8, "learning_rate": 1e-3, "beta": 0.2, "max_steps": 2},
    "logging": {"output_dir": None, "report_to": "none"},
}


def _nested(tiny_model, pairs_jsonl, out) -> dict:
    config = json.loads(json.dumps(NESTED))
    config["model"]["name_or_path"] = str(tiny_model)
    config["datasets"][0]["name"] = str(pairs_jsonl)
    config["logging"]["output_dir"] = str(out)
    return config


def test_their_script_with_use_peft_trains_lora_and_answers_their_result_keys(tiny_model, pairs_jsonl, tmp_path):
    trainer = create_rl_trainer(model_name=str(tiny_model), dataset_name=str(pairs_jsonl), algorithm="DPO",
                                backend="auto", use_peft=True, lora_r=4, num_train_epochs=1, max_steps=2,
                                batch_size=8, output_dir=str(tmp_path / "run"), warmup_ratio=0.0,
                                save_strategy="no", **TINY)
    results = trainer.train()
    assert results["model_path"] == str(tmp_path / "run")
    assert results["final_loss"] == results.metrics["last_window/loss"]
    assert results["global_step"] == results.global_step == 2 and results[0] == 2  # still a TrainOutput
    assert (tmp_path / "run" / "adapter_config.json").is_file()  # LoRA, as use_peft asked
    record = json.loads((tmp_path / "run" / "aligntune_run.json").read_text())
    assert record["use_lora"] is True
    assert trainer.save_model(str(tmp_path / "again")) == str(tmp_path / "again")


def test_their_nested_config_as_config_argument(tiny_model, pairs_jsonl, tmp_path):
    out = tmp_path / "nested"
    trainer = create_rl_trainer(config=_nested(tiny_model, pairs_jsonl, out))
    trainer.train()
    record = json.loads((out / "aligntune_run.json").read_text())
    assert record["beta"] == 0.2 and record["use_lora"] is True and record["global_step"] == 2
    # Keywords override the file, as in AlignTune 0.x.
    path = tmp_path / "nested.yaml"
    path.write_text(yaml.safe_dump(_nested(tiny_model, pairs_jsonl, tmp_path / "from-file")), encoding="utf-8")
    trainer = create_rl_trainer(config=str(path), beta=0.3)
    assert trainer.aligntune_config.beta == 0.3 and trainer.aligntune_config.lora_r == 4


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aligntune", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_their_cli_flags_and_nested_yaml(tiny_model, pairs_jsonl, tmp_path):
    proc = _cli("train", "--model", str(tiny_model), "--dataset", str(pairs_jsonl), "--type", "dpo", "--backend",
                "trl", "--max-steps", "1", "--output-dir", str(tmp_path / "flags"), "--set", "precision=fp32",
                "--set", "save_steps=null")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "flags" / "aligntune_run.json").read_text())["global_step"] == 1
    # Defaults that differ from AlignTune 0.x are said at start-up, never switched silently.
    assert "defaults in effect" in proc.stderr and "AlignTune 0.x: LoRA" in proc.stderr
    path = tmp_path / "nested.yaml"
    path.write_text(yaml.safe_dump(_nested(tiny_model, pairs_jsonl, tmp_path / "nested")), encoding="utf-8")
    for args in (["train", "--config", str(path)], ["train", str(path), "--overwrite-output-dir"]):
        proc = _cli(*args)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert json.loads((tmp_path / "nested" / "aligntune_run.json").read_text())["beta"] == 0.2


def test_backend_listing_and_info():
    backends = {entry["name"]: entry for entry in list_backends()}
    assert backends["trl"]["available"] is True and backends["trl"]["distribution"] == "aligntune-backend-trl"
    assert get_backend_status()["trl"]["available"] is True
    listing = _cli("list-backends")
    assert listing.returncode == 0 and listing.stdout.startswith("trl") and "available" in listing.stdout
    info = _cli("info")
    assert info.returncode == 0 and "transformers" in info.stdout and "devices:" in info.stdout
    assert "aligntune-backend-trl" in info.stdout


def test_the_migration_page_names_every_mapped_and_refused_name():
    from pathlib import Path

    from aligntune.core import compat
    from aligntune.core.config import TrainConfig
    from aligntune.core.options import alias_table

    docs = Path(__file__).resolve().parents[1] / "docs"
    # AlignTune 0.x's names on its migration page, TRL's on TRL's
    page = "".join((docs / name).read_text(encoding="utf-8") for name in ("migrating.md", "migrating-from-trl.md"))
    names = [*alias_table(TrainConfig), *compat.TRAINING_ARGS, *compat.MODEL_INIT, *compat.REFUSED, *compat.NOT_DPO]
    assert [name for name in names if f"`{name}`" not in page] == []


def test_trainer_config_tokenizer_predict_and_push_to_hub(tiny_model, pairs_jsonl, tmp_path, monkeypatch):
    import attrs

    trainer = create_rl_trainer(model_name=str(tiny_model), dataset_name=str(pairs_jsonl), max_steps=1, batch_size=8,
                                output_dir=str(tmp_path / "run"), **TINY)
    assert trainer.config.max_steps == 1 and trainer.config.output_dir == str(tmp_path / "run")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        trainer.config.beta = 2.0  # a view, not a way to change a run behind its record
    # AlignTune 0.x's nested sections, answered from the same config (and the trainer's resolved arguments).
    config = trainer.config
    assert config.algo == "dpo" and config.algo.value == "dpo"
    assert config.model.name_or_path == str(tiny_model) and config.model.use_peft is False
    assert config.train.per_device_batch_size == 8 and config.train.beta == config.beta == 0.1
    assert config.train.max_steps == 1 and config.train.learning_rate == TINY["learning_rate"]
    assert config.train.lr_scheduler == trainer.args.lr_scheduler_type.value  # the trainer's default, as resolved
    assert config.datasets[0].name == str(pairs_jsonl) and config.logging.output_dir == str(tmp_path / "run")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.train.beta = 2.0
    with pytest.raises(AttributeError, match="trainer.config.train has no 'betta'.*beta"):
        config.train.betta
    assert trainer.tokenizer is trainer.processing_class
    with pytest.raises(ConfigError, match="holds no trained model yet"):
        trainer.push_to_hub("someone/tiny-dpo")
    trainer.train()
    reply = trainer.predict("Q: what is 2 plus 3? A:", max_new_tokens=4)
    # The same greedy decoding with plain transformers on the saved model gives the same text.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "run")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "run").eval()
    ids = tokenizer("Q: what is 2 plus 3? A:", return_tensors="pt")
    expected = model.generate(**ids, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert reply == tokenizer.decode(expected[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert trainer.predict(["a", "b"], max_new_tokens=2) == [trainer.predict("a", max_new_tokens=2),
                                                               trainer.predict("b", max_new_tokens=2)]
    with pytest.raises(ConfigError, match="repo_id must be 'user/name'"):
        trainer.push_to_hub("no-slash")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from aligntune.errors import AlignTuneError

    with pytest.raises(AlignTuneError, match="push_to_hub 'someone/tiny-dpo' failed: .* The model stays in"):
        trainer.push_to_hub("someone/tiny-dpo")  # offline: up to the upload call, and a clear error


def test_their_documented_dpo_workflow_runs_unchanged_apart_from_model_data_and_device(tiny_model, pairs_jsonl,
                                                                                         tmp_path):
    """AlignTune 0.x's DPO example as its docs show it (train with their keywords, read `results["model_path"]`,
    evaluate trained and base model through `aligntune.eval.runner`), with the model, data and GPU-only settings
    swapped for local CPU ones."""
    from aligntune.eval.runner import EvalConfig, run_eval

    model_name, dataset_name, output_dir = str(tiny_model), str(pairs_jsonl), str(tmp_path / "dpo_trl")
    trainer = create_rl_trainer(
        model_name=model_name, dataset_name=dataset_name, algorithm="dpo", split="train", backend="trl",
        num_epochs=1, batch_size=8, learning_rate=1e-3, max_seq_length=64,
        quantization={"load_in_4bit": False},  # theirs: True (needs a CUDA GPU)
        output_dir=output_dir, loggers=["tensorboard"],
        rewards=[{"type": "coherence", "weight": 0.4, "params": {}}],  # a PPO setting their DPO ignores
        precision="fp32",  # theirs: fp16 (GPU)
        max_steps=3,
    )
    training_results = trainer.train()
    trained_model_path = training_results["model_path"]
    assert trained_model_path == output_dir and isinstance(training_results.get("final_loss"), float)
    results = {}
    for name, path in (("trained", trained_model_path), ("base", model_name)):
        results[name] = run_eval(EvalConfig(
            model_path=path, output_dir=f"{output_dir}/eval_results_{name}", device="cpu", task_type="dpo",
            data_task_type="dpo", metrics=["kl_divergence", "win_rate", "reward_margin"],
            reference_model_path=model_name, dataset_name=dataset_name, split="test", data_files={"test": dataset_name},
            max_length=64, temperature=0.0, batch_size=8, max_samples=16, use_lora=False,
        ))
    assert results["base"]["reward_margin"] == pytest.approx(0.0, abs=1e-6)  # the base against itself
    assert results["trained"]["reward_margin"] != pytest.approx(0.0, abs=1e-6)
    assert "win_rate" in results["trained"].not_computed  # no judge: said, not invented
