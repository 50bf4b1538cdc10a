"""Several processes through `aligntune train` and accelerate (CPU, gloo): the shipped configs, the launch itself,
DDP and FSDP2 runs equal to one process with the same global batch, the reference cache cold and warm, resuming,
and the errors for runs that would not be what their config says.

FSDP2 runs on CPU processes with `tests/support/fsdp_on_cpu` on PYTHONPATH (accelerate sets FSDP up on GPUs only;
see that file). Each run here is a real multi-process training run of the tiny model: about 10 s each.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from aligntune import launch
from aligntune.core.config import TrainConfig
from aligntune.errors import ConfigError
from safetensors.torch import load_file

FSDP_ON_CPU = str(Path(__file__).parent / "support" / "fsdp_on_cpu")


def _aligntune(*args: str, fsdp_on_cpu: bool = False) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items()
           if key not in ("LOCAL_RANK", "RANK", "WORLD_SIZE", launch.LAUNCHED_ENV)}
    env["OMP_NUM_THREADS"] = "1"
    if fsdp_on_cpu:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [FSDP_ON_CPU, env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "aligntune", *args], capture_output=True, text=True, timeout=600,
                          env=env)


def _config(path: Path, model: Path, data: Path, out: Path, **options) -> Path:
    values = {"model_name": str(model), "dataset_name": str(data), "output_dir": str(out), "max_steps": 3,
              "save_steps": 3, "batch_size": 4, "precision": "fp32", "learning_rate": 1e-3, "logging_steps": 1,
              "prefix_sharing": True, "packing": True, **options}
    path.write_text("".join(f"{key}: {json.dumps(value)}\n" for key, value in values.items()), encoding="utf-8")
    return path


def _losses(out: Path, step: int, metric: str = "loss") -> list[float]:
    state = json.loads((out / f"checkpoint-{step}" / "trainer_state.json").read_text())
    return [entry[metric] for entry in state["log_history"] if metric in entry]


def _max_weight_diff(a: Path, b: Path) -> float:
    left, right = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert set(left) == set(right)
    return max((left[name] - right[name]).abs().max().item() for name in left)


def _record(out: Path) -> dict:
    return json.loads((out / "aligntune_run.json").read_text())


def test_shipped_configs_are_valid_accelerate_configs(capsys):
    from accelerate.commands.config.config_args import load_config_from_file

    shipped = launch.shipped_configs()
    assert list(shipped) == ["ddp", "fsdp2", "fsdp2-offload", "zero2", "zero2-offload", "zero3", "zero3-offload"]
    for name, path in shipped.items():
        cluster = load_config_from_file(str(path))  # accelerate's own reader: a typo'd key would fail here
        resolved = launch.resolve_launch_config(name)
        assert str(cluster.distributed_type).upper().endswith({"ddp": "MULTI_GPU", "fsdp": "FSDP",
                                                                "deepspeed": "DEEPSPEED"}[resolved.kind])
        assert resolved.offload == name.endswith("-offload")
        if resolved.kind == "fsdp":
            assert cluster.fsdp_config["fsdp_version"] == 2
        if resolved.kind == "deepspeed":
            assert cluster.deepspeed_config["zero_stage"] == int(name[4])
    from aligntune.cli import main

    assert main(["launch-configs"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in shipped) and "DeepSpeed ZeRO-3 with CPU offload" in listing
    assert main(["launch-configs", "--path", "zero3"]) == 0
    assert capsys.readouterr().out.strip() == str(shipped["zero3"])
    assert main(["launch-configs", "--path", "zero4"]) == 2
    assert "neither a shipped accelerate config" in capsys.readouterr().err


def test_launch_settings_that_cannot_run_are_errors(tiny_model, pairs_jsonl, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"run.yaml, line 3, key 'distributed'.*fsdp2.*zero3"):
        TrainConfig.from_mapping({"model_name": "m", "dataset_name": "d", "distributed": "fsdp3"}, source="run.yaml",
                                 lines={"distributed": 3})
    config = TrainConfig(model_name="m", dataset_name="d", distributed="fsdp2", launcher="torchrun", num_processes=2)
    with pytest.raises(ConfigError, match="torchrun starts DDP runs only"):
        launch.launch_command(config, ["train", "run.yaml"])
    command = launch.launch_command(TrainConfig(model_name="m", dataset_name="d", num_processes=2), ["train", "x.yaml"])
    assert command[3:6] == ["accelerate", "--config_file", str(launch.shipped_configs()["ddp"])]
    assert command[command.index("--num_processes") + 1] == "2" and command[-3:] == ["aligntune", "train", "x.yaml"]

    # The Python API cannot start processes: it says how to.
    from aligntune.core.backend_factory import create_rl_trainer

    for key in ("LOCAL_RANK", "WORLD_SIZE", launch.LAUNCHED_ENV):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ConfigError, match="needs several processes.*aligntune train CONFIG.yaml"):
        create_rl_trainer(model_name=str(tiny_model), dataset_name=str(pairs_jsonl), output_dir=str(tmp_path / "o"),
                          distributed="ddp", num_processes=2)
    # Launched by plain torchrun (no FSDP) with a config that asks for FSDP2; or with another process count.
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="asks for FSDP2, but this process was started without it"):
        launch.check_launch(TrainConfig(model_name="m", dataset_name="d", distributed="fsdp2"))
    with pytest.raises(ConfigError, match="num_processes: 4, but this run has 2 processes"):
        launch.check_launch(TrainConfig(model_name="m", dataset_name="d", num_processes=4))


def test_ddp_and_fsdp2_train_as_one_process_does(tiny_model, pairs_jsonl, tmp_path):
    """Same global batch (1 x 8 pairs, 2 x 4 pairs): the same per-step losses and final weights, prefix sharing and
    packing on, the reference log-probs computed across processes into a cold cache, then read back warm."""
    single = tmp_path / "single"
    proc = _aligntune("train", str(_config(tmp_path / "single.yaml", tiny_model, pairs_jsonl, single, batch_size=8,
                                           ref_logps_cache_dir=str(tmp_path / "cache-single"))))
    assert proc.returncode == 0, proc.stderr[-3000:]

    shared_cache = tmp_path / "cache"
    runs = {}
    for name, fsdp_on_cpu in (("ddp", False), ("fsdp2", True)):  # ddp: cold cache; fsdp2: the same cache, warm
        out = tmp_path / name
        config = _config(tmp_path / f"{name}.yaml", tiny_model, pairs_jsonl, out, ref_logps_cache_dir=str(shared_cache))
        proc = _aligntune("train", str(config), "--num-processes", "2", "--distributed", name, fsdp_on_cpu=fsdp_on_cpu)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.count('"output_dir"') == 1  # one summary, from rank 0
        runs[name] = out

    reference = _losses(single, 3)
    assert len(reference) == 3 and reference[0] == pytest.approx(0.693147, abs=1e-5)
    for name, out in runs.items():
        assert _losses(out, 3) == pytest.approx(reference, abs=1e-5), name
        # aligntune's own metrics are gathered across processes before they are logged
        for metric in ("rewards/margins", "rewards/accuracies", "logps/chosen", "entropy", "num_tokens"):
            assert _losses(out, 3, metric) == pytest.approx(_losses(single, 3, metric), rel=1e-4, abs=1e-5), metric
        assert _max_weight_diff(out, single) < 1e-5, name
        record = _record(out)
        assert record["processes"]["world_size"] == 2 and record["processes"]["config"] == name
        assert record["processes"]["distributed_type"] == {"ddp": "MULTI_CPU", "fsdp2": "FSDP"}[name]
        assert record["reference_log_probs"]["precomputed"] is True
    assert _record(runs["ddp"])["reference_log_probs"]["cache_hits"] == 0  # computed by both processes, cached once
    assert _record(runs["fsdp2"])["reference_log_probs"]["cache_hits"] == 1
    assert len(list(shared_cache.glob("*.pt"))) == 1


@pytest.mark.parametrize("options", [{}, {"use_lora": True, "lora_r": 4, "lora_target_modules": ["q_proj", "v_proj"],
                                      "learning_rate": 1e-2}], ids=["sharded-reference", "lora-adapter-off"])
def test_fsdp2_reference_each_step_as_one_process(tiny_model, pairs_jsonl, tmp_path, options):
    """The reference run alongside the policy (no precompute) under FSDP2: a full fine-tune's reference copy is
    sharded like the policy; LoRA's reference is the sharded base with the adapter disabled."""
    options = {**options, "precompute_ref_log_probs": False}
    single, sharded = tmp_path / "single", tmp_path / "fsdp2"
    config = _config(tmp_path / "s.yaml", tiny_model, pairs_jsonl, single, batch_size=8, **options)
    proc = _aligntune("train", str(config))
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = _aligntune("train", str(_config(tmp_path / "f.yaml", tiny_model, pairs_jsonl, sharded, **options)),
                      "--num-processes", "2", "--distributed", "fsdp2", fsdp_on_cpu=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _losses(sharded, 3) == pytest.approx(_losses(single, 3), abs=1e-5)
    assert _losses(single, 3)[1] != pytest.approx(_losses(single, 3)[0], abs=1e-4)  # it trained
    weights = "adapter_model.safetensors" if options.get("use_lora") else "model.safetensors"
    left, right = load_file(single / weights), load_file(sharded / weights)
    assert set(left) == set(right) and max((left[k] - right[k]).abs().max().item() for k in left) < 1e-5
    record = _record(sharded)
    assert record["processes"]["distributed_type"] == "FSDP" and record["reference_log_probs"]["precomputed"] is False


def test_fsdp_on_cpu_processes_is_refused_not_run_as_ddp(tiny_model, pairs_jsonl, tmp_path):
    """Without a GPU accelerate would train data-parallel under an FSDP launch: aligntune stops with one clear
    error per process and one summary line, not a launcher traceback."""
    out = tmp_path / "run"
    proc = _aligntune("train", str(_config(tmp_path / "run.yaml", tiny_model, pairs_jsonl, out)),
                      "--num-processes", "2", "--distributed", "fsdp2")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.count("this run was launched for FSDP, but accelerate set it up as MULTI_CPU") == 2
    assert "training process(es) 0, 1 failed; their errors are above" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (out / "model.safetensors").exists()


def test_resume_two_processes_and_on_another_count(tiny_model, pairs_jsonl, tmp_path):
    """An FSDP2 run resumed from its checkpoint ends where the uninterrupted run ended; a DDP checkpoint resumed by
    one process is refused (the global batch would change) unless forced."""
    out = tmp_path / "fsdp2"
    config = _config(tmp_path / "fsdp2.yaml", tiny_model, pairs_jsonl, out, max_steps=4, save_steps=2)
    flags = ("--num-processes", "2", "--distributed", "fsdp2")
    proc = _aligntune("train", str(config), *flags, fsdp_on_cpu=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    finished = load_file(out / "model.safetensors")
    shutil.rmtree(out / "checkpoint-4")  # as if both processes died after step 3
    (out / "model.safetensors").unlink()
    proc = _aligntune("train", str(config), *flags, "--resume", fsdp_on_cpu=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _record(out)["run"]["resumed_from"]["step"] == 2
    again = load_file(out / "model.safetensors")
    assert all(torch.equal(again[name], finished[name]) for name in finished)

    out = tmp_path / "ddp"
    config = _config(tmp_path / "ddp.yaml", tiny_model, pairs_jsonl, out, max_steps=4, save_steps=2)
    proc = _aligntune("train", str(config), "--num-processes", "2", "--distributed", "ddp")
    assert proc.returncode == 0, proc.stderr[-3000:]
    shutil.rmtree(out / "checkpoint-4")
    refused = _aligntune("train", str(config), "--resume")
    assert refused.returncode != 0
    assert "processes: 2 -> 1" in refused.stderr and "--force-resume" in refused.stderr
    forced = _aligntune("train", str(config), "--resume", "--force-resume")
    assert forced.returncode == 0, forced.stderr[-3000:]
    record = _record(out)
    assert record["run"]["resumed_from"]["step"] == 2 and record["global_step"] == 4
    assert record["processes"]["world_size"] == 1


@pytest.mark.skipif(not (torch.cuda.device_count() >= 2 and __import__("importlib").util.find_spec("deepspeed")),
                    reason="DeepSpeed ZeRO needs CUDA GPUs (2 for a sharded run) and the deepspeed package; this "
                           "machine has neither (CPU-only CI). Run on a multi-GPU machine with deepspeed installed.")
@pytest.mark.parametrize("name", ["zero2", "zero3"])
def test_deepspeed_trains_as_one_process_does(tiny_model, pairs_jsonl, tmp_path, name):
    single = tmp_path / "single"
    proc = _aligntune("train", str(_config(tmp_path / "single.yaml", tiny_model, pairs_jsonl, single, batch_size=8)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / name
    proc = _aligntune("train", str(_config(tmp_path / f"{name}.yaml", tiny_model, pairs_jsonl, out)),
                      "--num-processes", "2", "--distributed", name)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _losses(out, 3) == pytest.approx(_losses(single, 3), abs=1e-4)
    assert _record(out)["processes"]["distributed_type"] == "DEEPSPEED"
