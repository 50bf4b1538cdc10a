"""Evaluation against independent computations written here with plain transformers."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from aligntune.errors import ConfigError, UnknownPluginError
from aligntune.eval.core import EvalConfig, run_eval
from conftest import ARITHMETIC

N = 24


def _sequence_logp(model, tokenizer, prompt, completion):
    """log p(completion + EOS | prompt), tokenized as TRL does for standard rows, summed in float64."""
    prompt_ids = tokenizer(prompt)["input_ids"]
    full = tokenizer(prompt + completion + tokenizer.eos_token)["input_ids"]
    start = next((i for i, (a, b) in enumerate(zip(prompt_ids, full)) if a != b), min(len(prompt_ids), len(full)))
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor([full])).logits[0].double(), dim=-1)
    return sum(logprobs[t - 1, full[t]].item() for t in range(start, len(full)))


def _independent_margins(policy_dir, reference_dir, beta):
    tokenizer = AutoTokenizer.from_pretrained(reference_dir)
    policy = AutoModelForCausalLM.from_pretrained(policy_dir, dtype=torch.float32).eval()
    reference = AutoModelForCausalLM.from_pretrained(reference_dir, dtype=torch.float32).eval()
    margins = []
    for row in ARITHMETIC[:N]:
        chosen = _sequence_logp(policy, tokenizer, row["prompt"], row["chosen"]) - _sequence_logp(
            reference, tokenizer, row["prompt"], row["chosen"])
        rejected = _sequence_logp(policy, tokenizer, row["prompt"], row["rejected"]) - _sequence_logp(
            reference, tokenizer, row["prompt"], row["rejected"])
        margins.append(beta * (chosen - rejected))
    return margins


def test_margin_and_accuracy_equal_an_independent_computation(tiny_model, tiny_policy, pairs_jsonl, tmp_path):
    results = run_eval(EvalConfig(model_path=str(tiny_policy), reference_model_path=str(tiny_model),
                                  output_dir=str(tmp_path), dataset_name=str(pairs_jsonl), split="train",
                                  max_samples=N, beta=0.3, batch_size=5))
    margins = _independent_margins(tiny_policy, tiny_model, 0.3)
    assert results["reward_margin"] == pytest.approx(sum(margins) / N, abs=1e-6)
    assert results["preference_accuracy"] == sum(m > 0 for m in margins) / N
    mean = sum(margins) / N
    std = math.sqrt(sum((m - mean) ** 2 for m in margins) / (N - 1))
    assert results["reward_margin_std"] == pytest.approx(std, abs=1e-6)
    assert results["reward_margin_ci95_low"] < results["reward_margin"] < results["reward_margin_ci95_high"]
    assert 0 < results["preference_accuracy"] < 1  # a real mix, not a degenerate case

    per_example = [json.loads(line) for line in (tmp_path / "per_example.jsonl").read_text().splitlines()]
    assert [r["margin"] for r in per_example] == pytest.approx(margins, abs=1e-6)
    assert per_example[0]["prompt"] == ARITHMETIC[0]["prompt"]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["metrics"] == results and saved["plan"]["beta"] == 0.3
    assert (tmp_path / "reward_margins.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| reward_margin |" in (tmp_path / "report.md").read_text()


def test_beta_is_read_from_the_run_record(tiny_model, tiny_policy, pairs_jsonl, tmp_path):
    policy_dir = tmp_path / "policy"
    AutoModelForCausalLM.from_pretrained(tiny_policy).save_pretrained(policy_dir)
    AutoTokenizer.from_pretrained(tiny_policy).save_pretrained(policy_dir)
    (policy_dir / "aligntune_run.json").write_text(json.dumps({"beta": 0.7, "model_name": str(tiny_model)}))
    results = run_eval(EvalConfig(model_path=str(policy_dir), output_dir=str(tmp_path / "eval"),
                                  dataset_name=str(pairs_jsonl), split="train", max_samples=N))
    margins = _independent_margins(tiny_policy, tiny_model, 0.7)  # reference: the run record's model_name
    assert results["reward_margin"] == pytest.approx(sum(margins) / N, abs=1e-6)
    plan = json.loads((tmp_path / "eval" / "results.json").read_text())["plan"]
    assert plan["beta_source"].endswith("aligntune_run.json") and plan["reference_path"] == str(tiny_model)


def test_a_model_against_itself_has_margin_zero_and_win_rate_half(tiny_model, tiny_judge, pairs_jsonl, tmp_path):
    results = run_eval(EvalConfig(reference_model_path=str(tiny_model), output_dir=str(tmp_path),
                                  dataset_name=str(pairs_jsonl), split="train", max_samples=8, beta=0.1,
                                  metrics=["reward_margin", "preference_accuracy", "win_rate"],
                                  judge_model_path=str(tiny_judge), max_new_tokens=6))
    assert results["reward_margin"] == 0.0
    assert results["preference_accuracy"] == 0.0  # no pair has a margin > 0
    assert results["win_rate"] == 0.5 and results["win_rate_ties"] == results["win_rate_n"]


def test_win_rate_equals_an_independent_generation_and_judgement(tiny_model, tiny_policy, tiny_judge, pairs_jsonl,
                                                                 tmp_path):
    n = 6
    results = run_eval(EvalConfig(model_path=str(tiny_policy), reference_model_path=str(tiny_model),
                                  output_dir=str(tmp_path), dataset_name=str(pairs_jsonl), split="train",
                                  max_samples=n, beta=0.1, metrics=["win_rate"], judge_model_path=str(tiny_judge),
                                  max_new_tokens=8))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    judge = AutoModelForSequenceClassification.from_pretrained(tiny_judge).eval()

    def respond(model_dir, prompt):
        model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
        ids = torch.tensor([tokenizer(prompt)["input_ids"]])
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)

    def score(prompt, response):
        with torch.no_grad():
            return judge(**tokenizer(prompt + response, return_tensors="pt")).logits[0, 0].item()

    outcomes = []
    for row in ARITHMETIC[:n]:
        policy_score = score(row["prompt"], respond(tiny_policy, row["prompt"]))
        reference_score = score(row["prompt"], respond(tiny_model, row["prompt"]))
        outcomes.append(1.0 if policy_score > reference_score else 0.0 if policy_score < reference_score else 0.5)
    assert results["win_rate"] == pytest.approx(sum(outcomes) / n)
    assert results["win_rate_ties"] < n  # the two models answer differently, so the judge decides
    per_example = [json.loads(line) for line in (tmp_path / "per_example.jsonl").read_text().splitlines()]
    assert all("policy_response" in r and "reference_response" in r for r in per_example)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"metrics": ["reward_margn"]}, UnknownPluginError, r"unknown metric 'reward_margn'.*Did you mean 'reward_margin'"),
        ({"metrics": ["win_rate"]}, ConfigError, "win_rate needs a judge.*set judge_model_path"),
        ({"metrics": ["win_rate"], "judge": "gpt"}, UnknownPluginError, "unknown judge 'gpt'.*Available: reward_model"),
        ({"use_unsloth": True}, UnknownPluginError, "pip install aligntune-backend-unsloth"),
        ({"use_lora": True, "model_path": None}, ConfigError, "use_lora.*set model_path to the adapter"),
        ({"beta": 0}, ConfigError, "option 'beta': must be a number > 0"),
        ({"metrix": ["x"]}, TypeError, "Did you mean 'metrics'"),
        ({"model_path": None, "reference_model_path": None}, ConfigError, "nothing to evaluate"),
    ],
)
def test_bad_configs_are_clear_errors(tiny_model, pairs_jsonl, tmp_path, monkeypatch, options, error, message):
    monkeypatch.setenv("ALIGNTUNE_DISABLE_PLUGINS", "aligntune-backend-unsloth")
    from aligntune import plugins

    plugins.reset_registry()
    base = {"model_path": str(tiny_model), "reference_model_path": str(tiny_model), "output_dir": str(tmp_path),
            "dataset_name": str(pairs_jsonl), "split": "train", "max_samples": 2}
    with pytest.raises(error, match=message):
        run_eval(EvalConfig(**{**base, **options}))
    plugins.reset_registry()
