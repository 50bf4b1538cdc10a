"""The recipes in examples/ are written for a GPU with the hub (none has run on one yet). Here each is (1) read
and validated exactly as written, and (2) trained offline through `aligntune train` after this test swaps what needs a GPU or the network
for tiny local stand-ins: the model, the data (the real hh-rlhf / oasst1 files from ../shared/data), the precision,
the Unsloth backend (not installed in this environment) and the launch. The recipe files are never edited."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aligntune import launch
from aligntune.core.compat import translate_options
from aligntune.core.config import TrainConfig

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
RECIPES = sorted(EXAMPLES.glob("*.yaml"))


def test_there_are_recipes_for_each_setting():
    names = {path.stem for path in RECIPES}
    assert {"qwen3-0.6b-full-dpo-hh-rlhf", "llama-3.2-1b-lora-dpo-oasst1", "qwen3-4b-qlora-unsloth",
            "qwen3-8b-fsdp2-8gpu", "local-file-dpo"} <= names


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda path: path.stem)
def test_recipe_is_valid_as_written(recipe):
    values = yaml.safe_load(recipe.read_text(encoding="utf-8"))
    config = TrainConfig.from_mapping(translate_options(values).options, source=str(recipe))
    assert config.precision in ("bf16", "auto")  # GPU recipes
    if config.distributed:
        command = launch.launch_command(config, ["train", str(recipe)])
        assert command[command.index("--num_processes") + 1] == str(config.num_processes)
        assert launch.resolve_launch_config(config.distributed).kind == "fsdp"


def _offline(values: dict, *, model: Path, shared: Path, out: Path) -> dict:
    """The recipe with its GPU/network parts swapped for local ones."""
    values = dict(values)
    values.update(model_name=str(model), output_dir=str(out), precision="fp32", max_steps=2, batch_size=2,
                  gradient_accumulation_steps=1, max_seq_length=min(values.get("max_seq_length", 256), 256),
                  report_to="none", save_steps=None, gradient_checkpointing=False)
    values["max_prompt_length"] = min(values.get("max_prompt_length") or 160, 160)
    for key in ("distributed", "num_processes", "eval_split", "num_epochs"):
        values.pop(key, None)
    if values.get("backend") == "unsloth":  # Unsloth has its own environment (tested in the nox unsloth session)
        values.update(backend="trl", load_in_4bit=False)
    if values["dataset_name"] == "Anthropic/hh-rlhf":
        values.update(data_files=str(shared / "hh-rlhf"), split="test", max_samples=16)
    elif values["dataset_name"] == "OpenAssistant/oasst1":
        values.update(data_files=str(shared / "oasst1" / "oasst1-validation-en.messages.jsonl"), max_samples=16)
    else:  # a local file, relative to the repository root as the recipe says
        values["dataset_name"] = str(EXAMPLES.parent / values["dataset_name"])
    return values


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda path: path.stem)
def test_recipe_trains_offline(recipe, tiny_model, shared_data, tmp_path):
    values = yaml.safe_load(recipe.read_text(encoding="utf-8"))
    out = tmp_path / "run"
    swapped = tmp_path / recipe.name
    swapped.write_text(yaml.safe_dump(_offline(values, model=tiny_model, shared=shared_data, out=out)),
                       encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "aligntune", "train", str(swapped)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=EXAMPLES.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((out / "aligntune_run.json").read_text())
    assert record["global_step"] == 2 and record["run"]["stop_reason"] == "finished"
    for key in ("learning_rate", "beta", "use_lora", "lora_r", "column_mapping", "system_prompt", "dataset_options"):
        if key in values:  # what the recipe sets is what trained
            assert record["config"][key] == values[key], key
