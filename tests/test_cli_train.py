"""The command line end to end: YAML config + --set overrides, errors without tracebacks, `python -m aligntune`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def _run(*args: str, cwd=None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aligntune", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_train_from_yaml_with_overrides(tiny_model, pairs_jsonl, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        f"model_name: {tiny_model}\n"
        f"dataset_name: {pairs_jsonl}\n"
        f"output_dir: {tmp_path / 'out'}\n"
        "batch_size: 8\nmax_steps: 2\nlogging_steps: 1\nsave_steps: null\nbeta: 0.1\n",
        encoding="utf-8",
    )
    proc = _run("--log-format", "json", "train", str(config), "--set", "beta=0.25", "--set", "loss_type=hinge")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])  # with --log-format json: one JSON line
    assert summary["output_dir"] == str(tmp_path / "out")
    record = json.loads((tmp_path / "out" / "aligntune_run.json").read_text())
    assert record["beta"] == 0.25 and record["loss_type"] == "hinge"
    # --log-format json: our log lines are JSON objects.
    ours = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{") and '"event"' in line]
    assert any(entry["event"] == "trainer ready" for entry in ours)


@pytest.mark.parametrize(
    ("yaml_text", "overrides", "message"),
    [
        ("model_name: m\ndataset_name: d\nbeta: 0\n", [], "line 3, key 'beta': must be a number > 0"),
        ("model_name: m\ndataset_name: d\nnum_epoch: 1\n", [], "Did you mean 'num_epochs'"),
        ("model_name: m\ndataset_name: d\n", ["backend=unsloth"], "pip install ./plugins/aligntune-backend-unsloth"),
        ("model_name: m\ndataset_name: [\n", [], "invalid YAML"),
    ],
)
def test_user_mistakes_print_one_clear_line_and_no_traceback(tmp_path, yaml_text, overrides, message):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml_text, encoding="utf-8")
    args = ["train", str(config)]
    for item in overrides:
        args += ["--set", item]
    proc = _run(*args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_dataset_file_is_a_clear_error(tiny_model, tmp_path):
    proc = _run("train", "--set", f"model_name={tiny_model}", "--set", f"dataset_name={tmp_path / 'nope.jsonl'}")
    assert proc.returncode == 2
    assert "dataset file not found" in proc.stderr and "Traceback" not in proc.stderr


def test_python_dash_m_lists_plugins():
    proc = _run("plugins", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    names = {record["name"]: record for record in json.loads(proc.stdout)}
    assert names["aligntune-backend-trl"]["provides"]["backends"] == ["trl"]
    assert names["aligntune-backend-trl"]["status"] == "ok"
