"""Evaluation of freshly DPO-trained tiny models reproduces what training measured on the same pairs."""

from __future__ import annotations

import json

import pytest

from aligntune.core.backend_factory import create_rl_trainer
from aligntune.eval.core import EvalConfig, run_eval
from conftest import ARITHMETIC

TRAIN = dict(batch_size=8, num_epochs=3, learning_rate=2e-3, beta=0.2, logging_steps=1, save_steps=None,
             precision="fp32", gradient_checkpointing=False, seed=5)


def _eval_metrics(trainer):
    metrics = trainer.evaluate(trainer.train_dataset)  # the pairs it trained on, with the final weights
    return metrics["eval_rewards/margins"], metrics["eval_rewards/accuracies"]


def test_eval_of_a_trained_model_equals_trainings_rewards(tiny_model, pairs_jsonl, tmp_path):
    out = tmp_path / "full"
    trainer = create_rl_trainer(model_name=str(tiny_model), dataset_name=str(pairs_jsonl), output_dir=str(out),
                                **TRAIN)
    trainer.train()
    margin, accuracy = _eval_metrics(trainer)
    # Raw pairs passed to evaluate() after training: the reference log-probs were precomputed before training (the
    # default), so a copy of the starting model is loaded to score them, giving the same margin.
    import datasets

    assert trainer.ref_model is None
    fresh = trainer.evaluate(datasets.Dataset.from_list(ARITHMETIC))
    assert trainer.ref_model is not None
    assert fresh["eval_rewards/margins"] == pytest.approx(margin, abs=1e-4)
    results = run_eval(EvalConfig(model_path=str(out), output_dir=str(tmp_path / "eval"),
                                  dataset_name=str(pairs_jsonl), split="train", batch_size=16))
    plan = json.loads((tmp_path / "eval" / "results.json").read_text())["plan"]
    assert plan["reference_path"] == str(tiny_model) and plan["beta"] == 0.2  # read back from aligntune_run.json
    assert results["reward_margin_n"] == len(ARITHMETIC)
    assert results["reward_margin"] > 0  # it learned to prefer the chosen answers it trained on
    assert results["reward_margin"] == pytest.approx(margin, abs=1e-4)
    assert results["preference_accuracy"] == pytest.approx(accuracy, abs=1e-6)

    # AlignTune 0.x's form: the pairs passed in memory (a DatasetDict: its "test" split), their option names, and
    # the extra metrics, which agree with training's own numbers where they overlap.
    import datasets

    from aligntune.eval.runner import EvalConfig as PastedConfig
    from aligntune.eval.runner import run_eval as pasted_run_eval

    pairs = datasets.DatasetDict({"test": datasets.Dataset.from_list(ARITHMETIC)})
    pasted = pasted_run_eval(PastedConfig(model_path=str(out), output_dir=str(tmp_path / "eval_pasted"),
                                          task_type="dpo", data_task_type="dpo", batch_size=16, max_length=512,
                                          precision="fp32", metrics=["reward_margin", "reward_accuracy",
                                                                     "implicit_reward", "log_ratio", "kl_divergence"]),
                             pairs)
    assert pasted["reward_margin"] == pytest.approx(results["reward_margin"], abs=1e-9)
    assert pasted["reward_accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert pasted["implicit_reward_margin"] == pytest.approx(margin, abs=1e-4)
    assert pasted["implicit_reward_chosen"] - pasted["implicit_reward_rejected"] == pytest.approx(margin, abs=1e-4)
    assert pasted["log_ratio"] == pytest.approx(pasted["kl_divergence"], abs=1e-9)
    assert pasted["log_ratio_chosen"] - pasted["log_ratio_rejected"] == pytest.approx(margin / 0.2, abs=1e-3)


def test_lora_adapter_on_its_base_model(tiny_model, pairs_jsonl, tmp_path):
    out = tmp_path / "lora"
    trainer = create_rl_trainer(model_name=str(tiny_model), dataset_name=str(pairs_jsonl), output_dir=str(out),
                                use_lora=True, lora_r=8, lora_alpha=16, lora_target_modules="all-linear",
                                **{**TRAIN, "learning_rate": 2e-2})
    trainer.train()
    margin, accuracy = _eval_metrics(trainer)
    results = run_eval(EvalConfig(model_path=str(out), use_lora=True, base_model=str(tiny_model),
                                  reference_model_path=str(tiny_model), output_dir=str(tmp_path / "eval"),
                                  dataset_name=str(pairs_jsonl), split="train", batch_size=16))
    assert results["reward_margin"] > 0
    assert results["reward_margin"] == pytest.approx(margin, abs=1e-4)
    assert results["preference_accuracy"] == pytest.approx(accuracy, abs=1e-6)
    # Without base_model it is read from aligntune_run.json; without model_path the base is evaluated: margin 0.
    again = run_eval(EvalConfig(model_path=str(out), use_lora=True, output_dir=str(tmp_path / "eval2"),
                                dataset_name=str(pairs_jsonl), split="train", batch_size=16))
    assert again["reward_margin"] == pytest.approx(results["reward_margin"], abs=1e-9)
    base = run_eval(EvalConfig(reference_model_path=str(tiny_model), output_dir=str(tmp_path / "eval3"),
                               dataset_name=str(pairs_jsonl), split="train", batch_size=16))
    assert base["reward_margin"] == 0.0
    # The guide's base-model form keeps use_lora and base_model and only leaves out model_path: it evaluates the
    # base model (against itself: margin 0, every pair a tie counted 1/2), it is not refused.
    guide_base = run_eval(EvalConfig(use_lora=True, base_model=str(tiny_model), reference_model_path=str(tiny_model),
                                     output_dir=str(tmp_path / "eval4"), dataset_name=str(pairs_jsonl),
                                     split="train", batch_size=16))
    assert guide_base["reward_margin"] == 0.0
    assert guide_base["preference_accuracy"] == 0.5 and guide_base["preference_accuracy_ties"] == len(ARITHMETIC)


def test_eval_cli_prints_the_table(tiny_model, tiny_policy, pairs_jsonl, tmp_path):
    import subprocess
    import sys

    config = tmp_path / "eval.yaml"
    config.write_text(f"model_path: {tiny_policy}\nreference_model_path: {tiny_model}\noutput_dir: {tmp_path / 'o'}\n"
                      f"dataset_name: {pairs_jsonl}\nsplit: train\nmax_samples: 8\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "aligntune", "eval", str(config), "--set", "beta=0.5"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "reward_margin" in proc.stdout and "preference_accuracy" in proc.stdout and "95% interval" in proc.stdout
    assert json.loads((tmp_path / "o" / "results.json").read_text())["plan"]["beta"] == 0.5
