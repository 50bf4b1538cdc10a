"""What users reach for in their first hour: exporting a run (LoRA merged, a model card that says what was trained,
the upload), TensorBoard logs, a TRL-style YAML, global CLI flags anywhere, JSON-lines logs, and typed packages."""

from __future__ import annotations

import importlib.resources
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from aligntune.core.backend_factory import create_rl_trainer
from aligntune.errors import ConfigError


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aligntune", *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def lora_run(tiny_model, pairs_jsonl, tmp_path_factory) -> Path:
    """A LoRA run logged to TensorBoard, then evaluated into <run>/eval."""
    from aligntune.eval.core import EvalConfig, run_eval

    out = tmp_path_factory.mktemp("lora") / "run"
    trainer = create_rl_trainer(model_name=str(tiny_model), dataset_name=str(pairs_jsonl), output_dir=str(out),
                                use_lora=True, lora_r=4, lora_target_modules=["q_proj", "v_proj"], max_steps=3,
                                batch_size=4, learning_rate=1e-2, precision="fp32", save_steps=None, logging_steps=1,
                                report_to="tensorboard" if importlib.util.find_spec("tensorboard") else "none")
    trainer.train()
    del trainer
    # No use_lora: evaluation sees that the run directory holds only an adapter.
    run_eval(EvalConfig(model_path=str(out), output_dir=str(out / "eval"), dataset_name=str(pairs_jsonl),
                        max_samples=8, metrics=["reward_margin", "preference_accuracy"], split="train"))
    return out


class _RecordingHub:
    """Stands in for the Hugging Face Hub service (the network), not for anything of ours: records the calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def create_repo(self, **kwargs):
        self.calls.append(("create_repo", kwargs))

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", {**kwargs, "files": sorted(p.name for p in Path(kwargs["folder_path"])
                                                                             .iterdir())}))
        return "https://huggingface.co/me/tiny-dpo/commit/0"


def test_export_merges_lora_into_its_base_with_a_model_card(lora_run, tiny_model, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from aligntune.export import export_model

    hub = _RecordingHub()
    output = export_model(lora_run, tmp_path / "export", push_to_hub="me/tiny-dpo", hub_api=hub)
    assert (output / "model.safetensors").is_file() and not (output / "adapter_config.json").exists()
    assert (output / "tokenizer.json").is_file() and (output / "aligntune_run.json").is_file()

    merged = AutoModelForCausalLM.from_pretrained(output).eval()
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), str(lora_run)).eval()
    ids = torch.tensor([[5, 17, 42, 99, 7, 3, 250, 11]])
    with torch.no_grad():
        expected, got = adapted(input_ids=ids).logits, merged(input_ids=ids).logits
        with adapted.disable_adapter():
            base = adapted(input_ids=ids).logits
    assert (expected - base).abs().max() > 1e-4  # the adapter trained: merging it changes the base
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)

    card = (output / "README.md").read_text()
    results = json.loads((lora_run / "eval" / "results.json").read_text())["metrics"]
    assert f"`{tiny_model}`" in card and "[None]" not in card
    assert "pairs.jsonl" in card and "`sigmoid`" in card and "| β | 0.1 |" in card and "r=4, alpha=32" in card
    assert f"| reward_margin | {results['reward_margin']:.4g} |" in card
    assert 'from_pretrained("me/tiny-dpo")' in card and "merged into the base weights" in card

    assert [name for name, _ in hub.calls] == ["create_repo", "upload_folder"]
    assert hub.calls[0][1] == {"repo_id": "me/tiny-dpo", "private": True, "exist_ok": True, "repo_type": "model"}
    assert hub.calls[1][1]["folder_path"] == str(output) and "model.safetensors" in hub.calls[1][1]["files"]

    # The card written during training names the real base model too (TRL's said "[None]" for a local one).
    training_card = (lora_run / "README.md").read_text()
    assert f"`{tiny_model}`" in training_card and "[None]" not in training_card
    assert "A LoRA adapter for" in training_card


def test_export_cli_adapter_copy_and_refusals(lora_run, tmp_path):
    proc = _cli("export", str(lora_run), "--no-merge", "--output", str(tmp_path / "adapter"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    assert "A LoRA adapter for" in (tmp_path / "adapter" / "README.md").read_text()
    again = _cli("export", str(lora_run), "--no-merge", "--output", str(tmp_path / "adapter"))
    assert again.returncode == 2 and "exists and is not empty" in again.stderr and "Traceback" not in again.stderr
    missing = _cli("export", str(tmp_path))
    assert missing.returncode == 2 and "not a finished aligntune run directory" in missing.stderr
    from aligntune.export import export_model

    with pytest.raises(ConfigError, match="no results.json there"):
        export_model(lora_run, tmp_path / "x", eval_results=tmp_path / "nowhere")


def test_tensorboard_logs_trls_metric_names(lora_run):
    pytest.importorskip("tensorboard", reason="report_to: tensorboard needs the tensorboard package (the nox `all` "
                                              "session installs it)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted(lora_run.rglob("events.out.tfevents.*"))
    assert files, f"no TensorBoard event file under {lora_run}"
    events = EventAccumulator(str(files[0].parent))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for name in ("loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
                 "logps/chosen", "logps/rejected", "entropy", "learning_rate", "grad_norm"):
        assert f"train/{name}" in tags, sorted(tags)
    assert [event.step for event in events.Scalars("train/loss")] == [1, 2, 3]
    assert events.Scalars("train/loss")[0].value == pytest.approx(0.693147, abs=1e-5)


def test_a_trl_style_yaml_trains(tiny_model, pairs_jsonl, tmp_path):
    out = tmp_path / "run"
    config = tmp_path / "dpo.yaml"
    config.write_text(f"""# written for `trl dpo --config`
model_name_or_path: {tiny_model}
dataset_name: {pairs_jsonl}
dataset_train_split: train
output_dir: {out}
per_device_train_batch_size: 2
gradient_accumulation_steps: 2
max_steps: 2
max_length: 128
learning_rate: 5.0e-5
lr_scheduler_type: cosine
warmup_ratio: 0.1
beta: 0.2
logging_steps: 1
save_strategy: "no"
bf16: false
report_to: none
dtype: float32
""", encoding="utf-8")
    proc = _cli("train", str(config))
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((out / "aligntune_run.json").read_text())["config"]
    assert record["model_name"] == str(tiny_model) and record["batch_size"] == 2 and record["max_seq_length"] == 128
    assert record["beta"] == 0.2 and record["gradient_accumulation_steps"] == 2
    assert record["training_args"]["lr_scheduler_type"] == "cosine" and record["training_args"]["warmup_steps"] == 0.1
    assert record["training_args"]["model_init_kwargs"] == {"dtype": "float32"}

    config.write_text(config.read_text() + "use_dora: true\n", encoding="utf-8")
    refused = _cli("train", str(config))
    assert refused.returncode == 2 and "use_dora" in refused.stderr and "DoRA is not offered" in refused.stderr


def test_global_flags_anywhere_and_json_lines_only(tiny_model, pairs_jsonl, tmp_path):
    out = tmp_path / "run"
    config = tmp_path / "run.yaml"
    config.write_text(f"model_name: {tiny_model}\ndataset_name: {pairs_jsonl}\noutput_dir: {out}\nmax_steps: 2\n"
                      "batch_size: 4\nprecision: fp32\nlogging_steps: 1\nsave_steps: 2\n", encoding="utf-8")
    proc = _cli("train", str(config), "--log-format", "json")  # the flag after the command
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.replace("\r", "\n").splitlines() if line.strip()]
    events = [json.loads(line) for line in lines]  # every line is JSON: no progress bar, no printed dict
    metrics = [event for event in events if event["event"] == "metrics"]
    assert [event["step"] for event in metrics if "loss" in event] == [1, 2]
    assert {"rewards/margins", "rewards/accuracies", "logps/chosen"} <= set(metrics[0])
    assert any(event["event"] == "trainer ready" for event in events)
    summary = proc.stdout.strip().splitlines()
    assert len(summary) == 1 and json.loads(summary[0])["output_dir"] == str(out)

    error = _cli("train", str(tmp_path / "missing.yaml"), "--log-format", "json")
    assert error.returncode == 2
    assert json.loads(error.stderr.strip())["event"] == "error"

    for argv in (["--log-level", "warning", "plugins", "list"], ["plugins", "list", "--log-level", "warning"]):
        assert _cli(*argv).returncode == 0
    # The mode is a setting of the run: the record says which, and resuming in the other mode is no change of settings.
    assert json.loads((out / "aligntune_run.json").read_text())["config"]["log_format"] == "json"


def test_log_format_is_a_run_setting_in_python_too(tiny_model, pairs_jsonl, tmp_path):
    script = (f"from aligntune import create_rl_trainer\n"
              f"create_rl_trainer(model_name={str(tiny_model)!r}, dataset_name={str(pairs_jsonl)!r}, "
              f"output_dir={str(tmp_path / 'run')!r}, max_steps=2, batch_size=4, precision='fp32', logging_steps=1, "
              f"save_steps=None, log_format='json').train()\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = [json.loads(line) for line in proc.stderr.replace("\r", "\n").splitlines() if line.strip()]
    assert [event["step"] for event in events if event["event"] == "metrics" and "loss" in event] == [1, 2]
    assert json.loads((tmp_path / "run" / "aligntune_run.json").read_text())["config"]["log_format"] == "json"


@pytest.mark.parametrize("package", ["aligntune", "aligntune_backend_trl", "aligntune_data_hh_rlhf",
                                     "aligntune_data_oasst1", "aligntune_loss_dpop"])
def test_every_distribution_ships_py_typed(package):
    pytest.importorskip(package, reason=f"{package} is not installed in this environment")
    assert importlib.resources.files(package).joinpath("py.typed").is_file()
