"""AlignTune 0.x evaluation calls, pasted as their users write them, on the tiny test models."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import datasets
import pytest
import torch

from aligntune.errors import ConfigError, DataError, UnknownOptionError, UnknownPluginError
from conftest import ARITHMETIC

N = 12


def _ours(tiny_model, tiny_policy, out, **options):
    from aligntune.eval.core import EvalConfig

    base = dict(model_path=str(tiny_policy), reference_model_path=str(tiny_model), output_dir=str(out), beta=0.2,
                metrics=["reward_margin", "preference_accuracy"])
    return EvalConfig(**{**base, **options})


def test_runner_module_re_exports_the_eval_api():
    from aligntune.eval import core, runner

    assert runner.EvalConfig is core.EvalConfig and runner.run_eval is core.run_eval


def test_their_dpo_sample_runs_and_reports_win_rate_as_not_computed(tiny_model, tiny_policy, pairs_jsonl, tmp_path):
    """AlignTune 0.x's DPO evaluation example (device, max_length, temperature=0.0, batch_size, win_rate without a
    judge), with the tiny models in place of the hub ids."""
    from aligntune.eval.runner import EvalConfig, run_eval

    config = EvalConfig(
        model_path=str(tiny_policy),
        output_dir=str(tmp_path / "theirs"),
        device="cpu",
        task_type="dpo",
        data_task_type="dpo",
        metrics=["reward_margin", "preference_accuracy", "win_rate"],
        reference_model_path=str(tiny_model),
        dataset_name=str(pairs_jsonl),
        split="train",
        max_samples=N,
        max_length=11,
        temperature=0.0,
        batch_size=2,
        dpo_beta=0.2,
        use_vllm=False,
        reward_model=None,
        column_mapping=None,
        trust_remote_code=False,
    )
    assert config.max_seq_length == 11 and config.beta == 0.2 and not config.decoding().do_sample
    results = run_eval(config)
    # Every other metric is computed, exactly as with our own option names.
    ours = run_eval(_ours(tiny_model, tiny_policy, tmp_path / "ours", max_seq_length=11, batch_size=2,
                          dataset_name=str(pairs_jsonl), split="train", max_samples=N))
    assert results["reward_margin"] == ours["reward_margin"] and results["preference_accuracy"] == ours[
        "preference_accuracy"]
    # win_rate: not computed, never a number; why and the line to add are in the results, the file and the report.
    assert math.isnan(results["win_rate"])
    assert "win_rate_ci95_low" not in results
    assert results.not_computed["win_rate"].add.startswith("judge_model_path=")
    saved = json.loads((tmp_path / "theirs" / "results.json").read_text())
    assert saved["metrics"]["win_rate"] is None
    assert saved["not_computed"]["win_rate"]["reason"] == "no judge is configured to score the generated responses"
    assert saved["not_computed"]["win_rate"]["add"].startswith("judge_model_path=")
    report = (tmp_path / "theirs" / "report.md").read_text()
    assert "| win_rate | not computed |" in report and "`judge_model_path=" in report
    per_example = [json.loads(line) for line in (tmp_path / "theirs" / "per_example.jsonl").read_text().splitlines()]
    assert not any("policy_response" in r for r in per_example)  # nothing was generated for it


def test_max_length_truncates_like_max_seq_length(tiny_model, tiny_policy, tmp_path):
    rows = ARITHMETIC[:N]
    from aligntune.eval.core import run_eval

    short = run_eval(_ours(tiny_model, tiny_policy, tmp_path / "a", max_length=11), dataset=rows)
    same = run_eval(_ours(tiny_model, tiny_policy, tmp_path / "b", max_seq_length=11), dataset=rows)
    full = run_eval(_ours(tiny_model, tiny_policy, tmp_path / "c"), dataset=rows)
    assert short["reward_margin"] == same["reward_margin"] != full["reward_margin"]


def test_strict_metrics_makes_a_missing_judge_an_error(tiny_model, tiny_policy, tmp_path):
    from aligntune.eval.core import run_eval

    config = _ours(tiny_model, tiny_policy, tmp_path, metrics=["reward_margin", "win_rate"], strict_metrics=True)
    with pytest.raises(ConfigError, match="win_rate needs a judge.*judge_model_path"):
        run_eval(config, dataset=ARITHMETIC[:4])
    assert not (tmp_path / "results.json").exists()  # refused before any work


def test_cli_reports_win_rate_not_computed_and_exits_0_unless_strict(tiny_model, tiny_policy, pairs_jsonl, tmp_path):
    config = tmp_path / "eval.yaml"
    config.write_text(f"model_path: {tiny_policy}\nreference_model_path: {tiny_model}\noutput_dir: {tmp_path / 'o'}\n"
                      f"dataset_name: {pairs_jsonl}\nsplit: train\nmax_samples: 6\nbeta: 0.2\n"
                      f"metrics: [reward_margin, preference_accuracy, win_rate]\nmax_length: 64\nprecision: fp32\n",
                      encoding="utf-8")
    command = [sys.executable, "-m", "aligntune", "eval", str(config)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    win_rate_line = next(line for line in proc.stdout.splitlines() if line.startswith("win_rate"))
    assert "not computed" in win_rate_line and "add judge_model_path=" in win_rate_line
    assert any(line.startswith("reward_margin") and "[" in line for line in proc.stdout.splitlines())
    strict = subprocess.run([*command, "--set", "strict_metrics=true"], capture_output=True, text=True, timeout=300)
    assert strict.returncode == 2
    assert "win_rate needs a judge" in strict.stderr and "judge_model_path" in strict.stderr


def test_a_dataset_can_be_passed_instead_of_dataset_name(tiny_model, tiny_policy, pairs_jsonl, tmp_path):
    from aligntune.eval.core import run_eval

    from_file = run_eval(_ours(tiny_model, tiny_policy, tmp_path / "file", dataset_name=str(pairs_jsonl),
                               split="train", max_samples=N))
    table = datasets.Dataset.from_list(ARITHMETIC[:N])
    passed = {
        "list": ARITHMETIC[:N],
        "dataset": table,
        "dataset_dict_test": datasets.DatasetDict({"train": datasets.Dataset.from_list(ARITHMETIC[N:]),
                                                   "test": table}),
    }
    for name, dataset in passed.items():
        results = run_eval(_ours(tiny_model, tiny_policy, tmp_path / name), dataset=dataset)
        assert results["reward_margin"] == pytest.approx(from_file["reward_margin"], abs=1e-12), name
        assert results["reward_margin_n"] == N
    # A DatasetDict's split comes from `split`; AlignTune 0.x's keyword `dataset_dict` works too.
    chosen_split = run_eval(_ours(tiny_model, tiny_policy, tmp_path / "split", split="train"),
                            dataset_dict=passed["dataset_dict_test"])
    assert chosen_split["reward_margin_n"] == len(ARITHMETIC) - N
    saved = json.loads((tmp_path / "dataset" / "results.json").read_text())
    assert saved["data"]["source"] == "in memory (Dataset)" and saved["data"]["kept"] == N
    assert "the dataset passed to run_eval (Dataset)" in (tmp_path / "dataset" / "report.md").read_text()


def test_column_mapping_renames_before_validation(tiny_model, tiny_policy, pairs_jsonl, tmp_path):
    from aligntune.eval.core import run_eval

    renamed = [{"question": r["prompt"], "good": r["chosen"], "bad": r["rejected"], "id": i}
               for i, r in enumerate(ARITHMETIC[:N])]
    mapping = {"question": "prompt", "good": "chosen", "bad": "rejected"}
    results = run_eval(_ours(tiny_model, tiny_policy, tmp_path / "m", column_mapping=mapping), dataset=renamed)
    reference = run_eval(_ours(tiny_model, tiny_policy, tmp_path / "r"), dataset=ARITHMETIC[:N])
    assert results["reward_margin"] == pytest.approx(reference["reward_margin"], abs=1e-12)
    # The same mapping on a file given as dataset_name.
    path = tmp_path / "renamed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in renamed), encoding="utf-8")
    from_file = run_eval(_ours(tiny_model, tiny_policy, tmp_path / "f", column_mapping=mapping,
                               dataset_name=str(path), split="train"))
    assert from_file["reward_margin"] == pytest.approx(reference["reward_margin"], abs=1e-12)


@pytest.mark.parametrize(
    ("dataset", "options", "error", "message"),
    [
        ([{"prompt": "Q: 1+1? A:", "chosen": " 2"}], {}, DataError,
         r"the dataset passed to run_eval, item 0: missing column\(s\) rejected"),
        ([{"prompt": "Q: 1+1? A:", "chosen": 2, "rejected": " 3"}], {}, DataError,
         r"item 0, column 'chosen': expected a string"),
        ([{"q": "Q: 1+1? A:", "chosen": " 2", "rejected": " 3"}], {"column_mapping": {"question": "prompt"}},
         DataError, r"item 0: column_mapping renames 'question', which this row does not have; its columns: chosen, q"),
        ([{"q": "Q", "prompt": "P", "chosen": " 2", "rejected": " 3"}], {"column_mapping": {"q": "prompt"}},
         DataError, "renames 'q' to 'prompt', but the row already has a 'prompt' column"),
        (datasets.DatasetDict({"train": datasets.Dataset.from_list(ARITHMETIC[:2])}), {}, ConfigError,
         r"DatasetDict without a 'test' split \(it has: train\); set split"),
        ({"prompt": ["x"]}, {}, ConfigError, "takes a datasets.Dataset, a DatasetDict .* got dict"),
        (ARITHMETIC[:2], {"data_files": "x.jsonl"}, ConfigError, "data_files only apply when loading dataset_name"),
    ],
)
def test_bad_passed_datasets_are_clear_errors(tiny_model, tiny_policy, tmp_path, dataset, options, error, message):
    from aligntune.eval.core import run_eval

    with pytest.raises(error, match=message):
        run_eval(_ours(tiny_model, tiny_policy, tmp_path, **options), dataset=dataset)


def test_dataset_name_is_required_without_a_dataset(tmp_path):
    from aligntune.eval.core import EvalConfig, run_eval

    with pytest.raises(ConfigError, match=r"dataset_name is required.*run_eval\(config, dataset=my_dataset\)"):
        run_eval(EvalConfig(reference_model_path="m", output_dir=str(tmp_path)))
    with pytest.raises(ConfigError, match=r"missing required option\(s\): dataset_name"):
        EvalConfig.from_mapping({"output_dir": str(tmp_path)}, source="eval.yaml")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"use_vllm": True}, "option 'use_vllm': AlignTune 0.x option .* remove it: it is a vLLM setting"),
        ({"k_list": [1, 5]}, "option 'k_list'.*pass@k is not a preference metric"),
        ({"reward_model": object()}, "option 'reward_model'.*set judge_model_path"),
        ({"load_in_4bit": True}, "option 'load_in_4bit'.*set dtype: bfloat16"),
        ({"device_map": "auto"}, "option 'device_map'.*use device: cuda"),
        ({"processing_fn": len}, r"option 'processing_fn'.*run_eval\(config, dataset=my_dataset.map\(fn\)\)"),
        ({"val_split_ratio": 0.1}, "option 'val_split_ratio'.*train_test_split"),
        ({"wandb_project": "p"}, "option 'wandb_project'.*log those to W&B yourself"),
        ({"num_samples": 4}, "option 'num_samples'.*one response per prompt"),
    ],
)
def test_their_options_without_meaning_here_say_what_to_write_instead(tmp_path, options, message):
    from aligntune.eval.runner import EvalConfig

    with pytest.raises(UnknownOptionError, match=message):
        EvalConfig(output_dir=str(tmp_path), dataset_name="d", **options)


def test_their_options_translate_and_harmless_ones_are_accepted(tmp_path):
    from aligntune.eval.runner import EvalConfig

    config = EvalConfig(output_dir=str(tmp_path), dataset_name="d", precision="bf16", dpo_beta=0.3, max_length=256,
                        use_vllm=False, reward_model=None, k_list=None, load_in_4bit=False, num_samples=1,
                        low_cpu_mem_usage=True, trust_remote_code=False, device="cuda")
    assert (config.dtype, config.beta, config.max_seq_length, config.device) == ("bfloat16", 0.3, 256, "cuda")
    assert EvalConfig(output_dir="o", dataset_name="d", precision="half").dtype == "float16"
    unset = EvalConfig(output_dir="o", dataset_name="d", metrics=None, data_task_type=None, max_length=None)
    assert (unset.metrics, unset.data_task_type, unset.max_seq_length) == (
        ["reward_margin", "preference_accuracy"], "dpo", None)  # 0.x's "not set": our defaults
    with pytest.raises(ConfigError, match="option 'max_length': options 'max_length' and 'max_seq_length' are the "
                                          "same option; give one \\(max_length is AlignTune 0.x's name for "
                                          "max_seq_length\\)"):
        EvalConfig(output_dir="o", dataset_name="d", max_length=8, max_seq_length=16)
    with pytest.raises(ConfigError, match="option 'precision': must be one of fp32"):
        EvalConfig(output_dir="o", dataset_name="d", precision="fp8")
    with pytest.raises(ConfigError, match="option 'device': must be auto, cpu, cuda"):
        EvalConfig(output_dir="o", dataset_name="d", device="gpu")
    with pytest.raises(ConfigError, match=r"column_mapping.*maps your column to ours, e.g. \{'question': 'prompt'\}"):
        EvalConfig(output_dir="o", dataset_name="d", column_mapping={"prompt": "question"})
    with pytest.raises(ConfigError, match="column_mapping.*maps several columns to 'chosen'"):
        EvalConfig(output_dir="o", dataset_name="d", column_mapping={"a": "chosen", "b": "chosen"})
    # YAML: translated too, and a refused option names the file and line.
    loaded = EvalConfig.from_mapping({"output_dir": "o", "dataset_name": "d", "max_length": 99, "precision": "fp16"},
                                     source="eval.yaml", lines={"max_length": 3, "precision": 4})
    assert (loaded.max_seq_length, loaded.dtype) == (99, "float16")
    with pytest.raises(UnknownOptionError, match="eval.yaml, line 5, key 'use_vllm': AlignTune 0.x option"):
        EvalConfig.from_mapping({"output_dir": "o", "dataset_name": "d", "use_vllm": True}, source="eval.yaml",
                                lines={"use_vllm": 5})


def test_temperature_zero_is_greedy_and_sampling_follows_their_rule():
    from aligntune.eval.runner import EvalConfig

    def decoding(**options):
        return EvalConfig(output_dir="o", dataset_name="d", **options).decoding()

    assert not decoding().do_sample  # greedy by default
    assert not decoding(temperature=0.0).do_sample
    assert not decoding(temperature=0.0, top_p=0.9).do_sample
    sampled = decoding(temperature=0.7)  # a sampling setting given: sample (AlignTune 0.x's rule)
    assert sampled.do_sample and sampled.temperature == 0.7 and sampled.top_p == 1.0
    assert not decoding(temperature=0.7, do_sample=False).do_sample
    assert decoding(do_sample=True).temperature == 1.0
    with pytest.raises(ConfigError, match="option 'temperature': 0 means greedy decoding, but do_sample is true"):
        decoding(temperature=0.0, do_sample=True)


def test_temperature_zero_generates_greedily(tiny_model, tiny_policy, tiny_judge, tmp_path):
    """With a judge, temperature=0.0 gives the greedy responses: the same as the default settings, twice."""
    from aligntune.eval.runner import EvalConfig, run_eval

    def responses(out, **options):
        run_eval(EvalConfig(model_path=str(tiny_policy), reference_model_path=str(tiny_model), output_dir=str(out),
                            metrics=["win_rate"], judge_model_path=str(tiny_judge), max_new_tokens=5, **options),
                 dataset=ARITHMETIC[:3])
        return [json.loads(line)["policy_response"] for line in (out / "per_example.jsonl").read_text().splitlines()]

    assert responses(tmp_path / "t0", temperature=0.0) == responses(tmp_path / "default")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_device_cuda_without_cuda_is_a_clear_error(tiny_model, tmp_path):
    from aligntune.eval.runner import EvalConfig, run_eval

    with pytest.raises(ConfigError, match="device 'cuda': CUDA is not available here.*set device: cpu"):
        run_eval(EvalConfig(reference_model_path=str(tiny_model), output_dir=str(tmp_path), device="cuda"),
                 dataset=ARITHMETIC[:2])


def test_device_cpu_places_the_models_on_the_cpu(tiny_model, tiny_policy, tmp_path):
    from aligntune.eval.core import run_eval

    results = run_eval(_ours(tiny_model, tiny_policy, tmp_path, device="cpu"), dataset=ARITHMETIC[:4])
    assert json.loads((tmp_path / "results.json").read_text())["config"]["device"] == "cpu"
    assert results["reward_margin_n"] == 4


def test_the_base_model_form_evaluates_the_base_model(tiny_model, tmp_path):
    """The guide's sample without model_path but with use_lora=True and base_model: the base model is the policy."""
    from aligntune.eval.runner import EvalConfig, run_eval

    results = run_eval(EvalConfig(output_dir=str(tmp_path), use_lora=True, base_model=str(tiny_model),
                                  reference_model_path=str(tiny_model), metrics=["reward_margin", "kl_divergence"]),
                       dataset=ARITHMETIC[:4])
    plan = json.loads((tmp_path / "results.json").read_text())["plan"]
    assert plan["policy_path"] == plan["reference_path"] == str(tiny_model) and plan["policy_adapter_on"] is None
    assert results["reward_margin"] == 0.0 and results["kl_divergence"] == 0.0
    # Without reference_model_path the reference is the base model too.
    again = run_eval(EvalConfig(output_dir=str(tmp_path / "b"), use_lora=True, base_model=str(tiny_model)),
                     dataset=ARITHMETIC[:4])
    assert again["reward_margin"] == 0.0


def test_use_unsloth_without_the_plugin_names_the_option(tiny_model, tmp_path, monkeypatch):
    from aligntune import plugins
    from aligntune.eval.runner import EvalConfig, run_eval

    monkeypatch.setenv("ALIGNTUNE_DISABLE_PLUGINS", "aligntune-backend-unsloth")
    plugins.reset_registry()
    try:
        with pytest.raises(UnknownPluginError, match="use_unsloth=true .*pip install ./plugins/aligntune-backend-unsloth"):
            run_eval(EvalConfig(output_dir=str(tmp_path / "o"), use_lora=True, base_model=str(tiny_model),
                                use_unsloth=True), dataset=ARITHMETIC[:2])
    finally:
        plugins.reset_registry()
    assert not (tmp_path / "o").exists()  # refused before any work
