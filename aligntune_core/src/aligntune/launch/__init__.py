"""Training on several processes: the accelerate configs aligntune ships, the command that starts a run on them, and
the check that a launched process runs the way its config says.

`aligntune train cfg.yaml --num-processes 2 --distributed fsdp2` (or `num_processes:` / `distributed:` in the YAML)
re-runs the same command under `accelerate launch --config_file <shipped fsdp2.yaml>`; inside the launched processes
the run goes on as usual, and `check_launch` makes sure the launcher really applied what the config names (a YAML
that says `fsdp2` started by plain `torchrun` would otherwise train data-parallel without a word).
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any

import attrs

from aligntune.errors import ConfigError

CONFIG_DIR = Path(__file__).parent / "configs"
LAUNCHERS = ("accelerate", "torchrun")


def shipped_configs() -> dict[str, Path]:
    """Shipped accelerate configs by name (`ddp`, `fsdp2`, `fsdp2-offload`, `zero2`, ...)."""
    return {path.stem: path for path in sorted(CONFIG_DIR.glob("*.yaml"), key=lambda p: p.stem)}


@attrs.frozen
class LaunchConfig:
    """What an accelerate config asks for, in the terms aligntune checks and records."""

    name: str  # a shipped name, or the file's path
    path: Path
    kind: str  # "ddp", "fsdp" or "deepspeed"
    fsdp_version: int | None = None
    zero_stage: int | None = None
    offload: bool = False

    def describe(self) -> str:
        if self.kind == "fsdp":
            return f"FSDP{self.fsdp_version or 1}" + (" with CPU offload" if self.offload else "")
        if self.kind == "deepspeed":
            return f"DeepSpeed ZeRO-{self.zero_stage}" + (" with CPU offload" if self.offload else "")
        return "DDP (data parallel)"


def resolve_launch_config(value: str, *, source: str | None = None) -> LaunchConfig:
    """`value` is a shipped name or the path of an accelerate config file; anything else is an error listing both."""
    import yaml

    shipped = shipped_configs()
    if value in shipped:
        path, name = shipped[value], value
    else:
        path, name = Path(value).expanduser(), value
        if not path.is_file():
            where = f"{source}: " if source else ""
            raise ConfigError(
                f"{where}distributed: {value!r} is neither a shipped accelerate config ({', '.join(shipped)}) nor an "
                "existing accelerate config file. Give one of those names, or the path of a file written by "
                "`accelerate config`."
            )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read this accelerate config: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: an accelerate config is a YAML mapping (distributed_type: ..., ...)")
    kind_of = {"MULTI_GPU": "ddp", "MULTI_CPU": "ddp", "MULTI_XPU": "ddp", "MULTI_NPU": "ddp", "NO": "ddp",
               "FSDP": "fsdp", "DEEPSPEED": "deepspeed"}
    distributed_type = str(data.get("distributed_type", "NO")).upper()
    if distributed_type not in kind_of:
        raise ConfigError(f"{path}: distributed_type {distributed_type!r} is not one aligntune runs; use one of "
                          f"{', '.join(kind_of)}")
    fsdp = data.get("fsdp_config") or {}
    deepspeed = data.get("deepspeed_config") or {}
    offload = bool(fsdp.get("fsdp_offload_params")) or any(
        str(deepspeed.get(key, "none")).lower() not in ("none", "") for key in ("offload_optimizer_device",
                                                                                 "offload_param_device"))
    return LaunchConfig(
        name=name, path=path, kind=kind_of[distributed_type],
        fsdp_version=int(fsdp.get("fsdp_version", 1)) if distributed_type == "FSDP" else None,
        zero_stage=int(deepspeed["zero_stage"]) if "zero_stage" in deepspeed else None, offload=offload,
    )


def distributed_problem(value: Any) -> str | None:
    """What is wrong with a `distributed:` value (None: nothing), for the config's own validation."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        return f"must be the name of a shipped accelerate config ({', '.join(shipped_configs())}) or a file path"
    try:
        resolve_launch_config(value)
    except ConfigError as exc:
        return str(exc).removeprefix("distributed: ")
    return None


# Set in the environment of the processes aligntune starts: they train, and never launch again.
LAUNCHED_ENV = "ALIGNTUNE_LAUNCHED"


def launched() -> bool:
    """True inside a process started by torchrun or accelerate launch (they set LOCAL_RANK and WORLD_SIZE), or by
    aligntune's own launch."""
    return ("LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ) or os.environ.get(LAUNCHED_ENV) == "1"


def running_kind() -> str:
    """How this process was launched: "fsdp", "deepspeed", "ddp" (several processes), or "single"."""
    truthy = ("1", "true", "yes")
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() in truthy:
        return "deepspeed"
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() in truthy:
        return "fsdp"
    return "ddp" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else "single"


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def wants_launch(config: Any) -> bool:
    """Whether a run with this config needs processes started for it (and is not already one of them)."""
    return not launched() and (config.distributed is not None or (config.num_processes or 1) > 1)


def check_launch(config: Any) -> None:
    """In the process about to train: the processes running are the ones the config asks for, or a clear error."""
    asked = resolve_launch_config(config.distributed) if config.distributed else None
    if not launched():
        if wants_launch(config):
            what = f"distributed: {config.distributed}" if asked else f"num_processes: {config.num_processes}"
            raise ConfigError(
                f"{what} needs several processes, and this is one. Start it with `aligntune train CONFIG.yaml` "
                f"(which launches them), or `accelerate launch --config_file "
                f"{asked.path if asked else shipped_configs()['ddp']} --num_processes N your_script.py`."
            )
        return
    running = running_kind()
    if asked is not None and asked.kind != "ddp" and running != asked.kind:
        raise ConfigError(
            f"distributed: {config.distributed} asks for {asked.describe()}, but this process was started "
            f"{'without it' if running in ('ddp', 'single') else 'for ' + running} (WORLD_SIZE={world_size()}). "
            f"Start it with `aligntune train CONFIG.yaml`, or `accelerate launch --config_file {asked.path} ...`; "
            "plain torchrun runs DDP only."
        )
    if config.num_processes is not None and config.num_processes != world_size():
        raise ConfigError(
            f"num_processes: {config.num_processes}, but this run has {world_size()} processes (WORLD_SIZE). Make "
            "them agree, or remove num_processes and let the launcher decide."
        )


def check_sharding(distributed_type: str) -> None:
    """After the trainer set up accelerate: it shards the way the launcher asked (`distributed_type` is accelerate's,
    e.g. "FSDP", "DEEPSPEED", "MULTI_GPU", "MULTI_CPU"). accelerate applies FSDP and DeepSpeed on GPUs (and other
    accelerators) only; on CPU processes it quietly trains data-parallel instead, with every process holding the
    whole model. That is refused here rather than recorded as the sharded run it is not."""
    asked = running_kind()
    expected = {"fsdp": "FSDP", "deepspeed": "DEEPSPEED"}.get(asked)
    if expected is not None and distributed_type != expected:
        raise ConfigError(
            f"this run was launched for {'FSDP' if asked == 'fsdp' else 'DeepSpeed'}, but accelerate set it up as "
            f"{distributed_type} (accelerate shards with {expected} on GPUs only; here every process would hold the "
            "whole model). On a machine without GPUs use distributed: ddp; for sharding, run on GPUs."
        )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def default_num_processes() -> int:
    """Every GPU of this machine; 1 without a GPU (a CPU run must say how many processes it wants)."""
    try:
        import torch
    except ImportError:
        return 1
    return max(torch.cuda.device_count(), 1) if torch.cuda.is_available() else 1


def launch_command(config: Any, argv: list[str], *, launcher: str | None = None) -> list[str]:
    """The command that runs `aligntune <argv>` on the processes `config` asks for."""
    launcher = launcher or config.launcher or "accelerate"
    if launcher not in LAUNCHERS:
        raise ConfigError(f"launcher: {launcher!r} is not known; use one of {', '.join(LAUNCHERS)}")
    processes = config.num_processes or default_num_processes()
    asked = resolve_launch_config(config.distributed or "ddp")
    import torch

    cpu = not torch.cuda.is_available()
    if launcher == "torchrun":
        if asked.kind != "ddp":
            raise ConfigError(f"launcher: torchrun starts DDP runs only; distributed: {config.distributed} "
                              f"({asked.describe()}) needs launcher: accelerate")
        return [sys.executable, "-m", "aligntune.launch.start", "torchrun", "--standalone", "--nproc_per_node",
                str(processes), "-m", "aligntune", *argv]
    if not _importable("accelerate"):  # the processes are started through accelerate's Python API
        raise ConfigError("launching several processes needs accelerate (installed with aligntune-backend-trl): "
                          "pip install accelerate")
    mixed = {"bf16": "bf16", "fp16": "fp16"}.get(config.precision, "no")
    if config.precision == "auto":  # on a GPU what the trainer will run (aligntune.core.precision); on CPUs none
        from aligntune.core.precision import resolve_precision

        mixed = "no" if cpu else resolve_precision("auto", cuda=True).mode
    command = [sys.executable, "-m", "aligntune.launch.start", "accelerate", "--config_file", str(asked.path),
               "--num_processes", str(processes), "--num_machines", "1", "--machine_rank", "0",
               "--main_process_port", str(_free_port()), "--mixed_precision", mixed]
    # No `--cpu` without a GPU: accelerate would start one process for MPI. Its torchrun route runs on CPUs too
    # (gloo), which is what a CPU machine's processes use.
    return [*command, "-m", "aligntune", *argv]


def _importable(name: str) -> bool:
    from importlib.util import find_spec

    return find_spec(name) is not None


def run_record_entry(config: Any) -> dict[str, Any]:
    """What the run record says about how the processes were launched (the trainer adds how many there were and
    how accelerate sharded them)."""
    entry: dict[str, Any] = {"kind": running_kind() if launched() else "single"}
    if config.distributed:
        asked = resolve_launch_config(config.distributed)
        entry.update(config=asked.name, description=asked.describe())
    return entry
