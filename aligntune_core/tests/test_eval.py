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
                                  max_samples=N, beta=0.3, batch_size=5, device="cpu"))
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
    # A format-1 record (no format key) with only what evaluation reads; the rest it may lack.
    (policy_dir / "aligntune_run.json").write_text(json.dumps({
        "beta": 0.7, "model_name": str(tiny_model), "config": {},
        "tokenization": {"max_seq_length": 512, "max_prompt_length": None}}))
    results = run_eval(EvalConfig(model_path=str(policy_dir), output_dir=str(tmp_path / "eval"),
                                  dataset_name=str(pairs_jsonl), split="train", max_samples=N, device="cpu"))
    margins = _independent_margins(tiny_policy, tiny_model, 0.7)  # reference: the run record's model_name
    assert results["reward_margin"] == pytest.approx(sum(margins) / N, abs=1e-6)
    plan = json.loads((tmp_path / "eval" / "results.json").read_text())["plan"]
    assert plan["beta_source"].endswith("aligntune_run.json") and plan["reference_path"] == str(tiny_model)


def test_a_model_against_itself_has_margin_zero_and_win_rate_half(tiny_model, tiny_judge, pairs_jsonl, tmp_path):
    results = run_eval(EvalConfig(reference_model_path=str(tiny_model), output_dir=str(tmp_path),
                                  dataset_name=str(pairs_jsonl), split="train", max_samples=8, beta=0.1,
                                  metrics=["reward_margin", "preference_accuracy", "reward_accuracy", "win_rate"],
                                  judge_model_path=str(tiny_judge), max_new_tokens=6))
    assert results["reward_margin"] == 0.0
    # Every margin is exactly 0: eight ties, each counted 1/2 (as win rate counts them), and said so.
    assert results["preference_accuracy"] == 0.5 and results["preference_accuracy_ties"] == 8
    assert results["reward_accuracy"] == 0.5 and results["reward_accuracy_ties"] == 8
    assert results["preference_accuracy_ci95_low"] < 0.5 < results["preference_accuracy_ci95_high"]
    assert results["win_rate"] == 0.5 and results["win_rate_ties"] == results["win_rate_n"]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["metrics"]["preference_accuracy_ties"] == 8
    assert "| preference_accuracy | 0.5000 | [" in (tmp_path / "report.md").read_text()
    assert "8 ties counted as 1/2" in (tmp_path / "report.md").read_text()


def test_a_pair_with_margin_zero_counts_half(tiny_model, tiny_policy, tmp_path):
    """A pair whose prompt fills max_seq_length (both completions are truncated away: its margin is exactly 0) next
    to real pairs: it adds 1/2 to the accuracy, the others count 1 or 0 by the sign of their margin."""
    long_prompt = "Q: what is 2 plus 2? " * 6 + "A:"
    rows = ARITHMETIC[:5] + [{"prompt": long_prompt, "chosen": " 4", "rejected": " 5"}]
    results = run_eval(EvalConfig(model_path=str(tiny_policy), reference_model_path=str(tiny_model), beta=0.3,
                                  max_seq_length=20, output_dir=str(tmp_path), metrics=["preference_accuracy"]),
                       dataset=rows)
    per_example = [json.loads(line) for line in (tmp_path / "per_example.jsonl").read_text().splitlines()]
    margins = [r["margin"] for r in per_example]
    ties = sum(m == 0 for m in margins)
    assert ties == 1 and margins[-1] == 0 and per_example[-1]["chosen_tokens"] == 0
    assert ties == results["preference_accuracy_ties"]
    assert results["preference_accuracy"] == (sum(m > 0 for m in margins) + 0.5 * ties) / len(rows)


def test_win_rate_equals_an_independent_generation_and_judgement(tiny_model, tiny_policy, tiny_judge, pairs_jsonl,
                                                                 tmp_path):
    n = 6
    results = run_eval(EvalConfig(model_path=str(tiny_policy), reference_model_path=str(tiny_model),
                                  output_dir=str(tmp_path), dataset_name=str(pairs_jsonl), split="train",
                                  max_samples=n, beta=0.1, metrics=["win_rate"], judge_model_path=str(tiny_judge),
                                  max_new_tokens=8, device="cpu"))
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
        ({"metrics": ["win_rate"], "strict_metrics": True}, ConfigError,
         "win_rate needs a judge.*set judge_model_path"),
        ({"metrics": ["win_rate"], "judge": "gpt"}, UnknownPluginError, "unknown judge 'gpt'.*Available: reward_model"),
        ({"use_unsloth": True}, UnknownPluginError, "use_unsloth=true .*pip install ./plugins/aligntune-backend-unsloth"),
        ({"use_lora": True, "model_path": None, "reference_model_path": None}, ConfigError, "nothing to evaluate"),
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


def _float64_sequence(model, tokenizer, prompt, completion):
    """(log p(completion + EOS | prompt), the summed next-token entropy there, the token count), all in float64,
    with a float64 copy of the model: forward, log_softmax, gather."""
    prompt_ids = tokenizer(prompt)["input_ids"]
    full = tokenizer(prompt + completion + tokenizer.eos_token)["input_ids"]
    differs = (i for i, (a, b) in enumerate(zip(prompt_ids, full, strict=False)) if a != b)
    start = next(differs, min(len(prompt_ids), len(full)))
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor([full])).logits[0].double(), dim=-1)
    positions = torch.arange(start - 1, len(full) - 1)
    targets = torch.tensor(full[start:])
    logp = logprobs[positions].gather(-1, targets.unsqueeze(-1)).sum().item()
    entropy = -(logprobs[positions].exp() * logprobs[positions]).sum().item()
    return logp, entropy, len(full) - start


def test_extra_metrics_equal_an_independent_float64_computation(tiny_model, tiny_policy, pairs_jsonl, tmp_path):
    beta, n = 1.5, N
    names = ["kl_divergence", "log_ratio", "implicit_reward", "calibration", "reward_accuracy", "policy_entropy",
             "preference_accuracy", "reward_margin"]
    results = run_eval(EvalConfig(model_path=str(tiny_policy), reference_model_path=str(tiny_model),
                                  output_dir=str(tmp_path), dataset_name=str(pairs_jsonl), split="train",
                                  max_samples=n, beta=beta, batch_size=5, metrics=names, device="cpu"))

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    policy = AutoModelForCausalLM.from_pretrained(tiny_policy, dtype=torch.float64).eval()
    reference = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float64).eval()
    ratio_w, ratio_l, entropy_sum, tokens = [], [], 0.0, 0
    for row in ARITHMETIC[:n]:
        pw, hw, tw = _float64_sequence(policy, tokenizer, row["prompt"], row["chosen"])
        pl, hl, tl = _float64_sequence(policy, tokenizer, row["prompt"], row["rejected"])
        rw, _, _ = _float64_sequence(reference, tokenizer, row["prompt"], row["chosen"])
        rl, _, _ = _float64_sequence(reference, tokenizer, row["prompt"], row["rejected"])
        ratio_w.append(pw - rw)
        ratio_l.append(pl - rl)
        entropy_sum += hw + hl
        tokens += tw + tl

    def mean(values):
        return sum(values) / len(values)

    margins = [beta * (w - r) for w, r in zip(ratio_w, ratio_l, strict=True)]
    tol = dict(abs=2e-5)
    # kl_divergence: mean over pairs of the log-ratio averaged over the chosen and the rejected completion.
    per_pair = [(w + r) / 2 for w, r in zip(ratio_w, ratio_l, strict=True)]
    assert results["kl_divergence"] == pytest.approx(mean(per_pair), **tol)
    assert results["kl_divergence_n"] == n
    # log_ratio: per side and over all 2n completions (numerically the same as kl_divergence).
    assert results["log_ratio_chosen"] == pytest.approx(mean(ratio_w), **tol)
    assert results["log_ratio_rejected"] == pytest.approx(mean(ratio_l), **tol)
    assert results["log_ratio"] == pytest.approx(mean(ratio_w + ratio_l), **tol)
    # implicit_reward: beta * log-ratio per side, and the margin (the headline value).
    assert results["implicit_reward_chosen"] == pytest.approx(beta * mean(ratio_w), **tol)
    assert results["implicit_reward_rejected"] == pytest.approx(beta * mean(ratio_l), **tol)
    assert results["implicit_reward_margin"] == pytest.approx(mean(margins), **tol)
    assert results["implicit_reward"] == results["implicit_reward_margin"] == pytest.approx(results["reward_margin"])
    # calibration: ECE of sigmoid(margin) as P(chosen preferred), every label 1, 10 equal-width bins.
    probabilities = [1 / (1 + math.exp(-m)) for m in margins]
    bins = {}
    for p in probabilities:
        bins.setdefault(min(int(p * 10), 9), []).append(p)
    assert len(bins) > 2  # the probabilities spread over several bins: not a degenerate case
    ece = sum(len(b) / n * abs(mean(b) - 1.0) for b in bins.values())
    assert results["calibration"] == pytest.approx(ece, **tol)
    assert results["calibration"] == pytest.approx(1 - mean(probabilities), **tol)
    assert results["calibration_mean_probability"] == pytest.approx(mean(probabilities), **tol)
    # reward_accuracy: the share with beta*margin > 0 (ties 1/2): the same quantity as preference_accuracy.
    expected_accuracy = (sum(m > 0 for m in margins) + 0.5 * sum(m == 0 for m in margins)) / n
    assert results["reward_accuracy"] == results["preference_accuracy"] == expected_accuracy
    assert 0 < expected_accuracy < 1
    # policy_entropy: mean next-token entropy of the policy over every scored completion token.
    assert results["policy_entropy_tokens"] == tokens
    assert results["policy_entropy"] == pytest.approx(entropy_sum / tokens, rel=1e-5)
    assert 0 < results["policy_entropy"] < math.log(len(tokenizer))

    per_example = [json.loads(line) for line in (tmp_path / "per_example.jsonl").read_text().splitlines()]
    assert sum(r["policy_chosen_entropy"] + r["policy_rejected_entropy"] for r in per_example) == pytest.approx(
        entropy_sum, rel=1e-5)
    report = (tmp_path / "report.md").read_text()
    assert all(f"| {name} |" in report for name in names)


def test_a_model_against_itself_has_kl_zero_and_its_own_entropy(tiny_model, tmp_path):
    """The reference is the policy (one forward pass serves both): the KL estimate is exactly 0, and the entropy is
    still the model's own (the rows are passed in as a list)."""
    rows = ARITHMETIC[:4]
    same = run_eval(EvalConfig(reference_model_path=str(tiny_model), output_dir=str(tmp_path / "a"),
                               metrics=["policy_entropy", "kl_divergence"], device="cpu"), dataset=rows)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float64).eval()
    scored = [_float64_sequence(model, tokenizer, row["prompt"], row[side])
              for row in rows for side in ("chosen", "rejected")]
    assert same["policy_entropy"] == pytest.approx(sum(h for _, h, _ in scored) / sum(t for _, _, t in scored),
                                                   rel=1e-5)
    assert same["kl_divergence"] == 0.0  # the model against itself
