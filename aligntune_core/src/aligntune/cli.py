"""The `aligntune` command line.

    aligntune train [CONFIG.yaml] [--set key=value ...]   train (no config: the offline demo)
    aligntune eval CONFIG.yaml [--set key=value ...]       evaluate (reward_margin, preference_accuracy, win_rate)
    aligntune plugins list [--json]                        what is installed
    aligntune export RUN_DIR [--merge] [--push-to-hub REPO] a loadable model (LoRA merged) with a model card
    aligntune launch-configs                               the shipped accelerate configs (for `distributed:`)

Several processes: `aligntune train CONFIG.yaml --num-processes 2 --distributed fsdp2` (docs/distributed.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from aligntune import __version__
from aligntune.errors import AlignTuneError


def _global_flags(defaults: bool) -> argparse.ArgumentParser:
    """The flags every command takes, before or after its name (`aligntune --log-format json train x.yaml` and
    `aligntune train x.yaml --log-format json`). Only the top level sets defaults, so a command's copy of a flag
    replaces the top-level value only when it is given."""
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument("--log-format", choices=("console", "json"),
                       default="console" if defaults else argparse.SUPPRESS,
                       help="console lines, or JSON lines only (no progress bars) (default: console)")
    flags.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                       default="info" if defaults else argparse.SUPPRESS, help="(default: info)")
    return flags


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aligntune", description="Preference fine-tuning (DPO) of language models.",
                                     parents=[_global_flags(defaults=True)])
    parser.add_argument("--version", action="version", version=f"aligntune {__version__}")
    command_flags = _global_flags(defaults=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_parser = commands.add_parser

    def add_command(name: str, **kwargs) -> argparse.ArgumentParser:
        return _add_parser(name, parents=[command_flags], **kwargs)

    commands.add_parser = add_command  # every command, and the plugins subcommands below, take the global flags

    train = commands.add_parser("train", help="train with DPO (no CONFIG: run the offline demo)")
    train.add_argument("config", nargs="?", help="YAML file with create_rl_trainer options")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override an option (value read as YAML; repeatable)")
    train.add_argument("--resume", nargs="?", const=True, default=None, metavar="PATH",
                       help="continue the run in output_dir from its latest complete checkpoint, or from PATH "
                            "(a checkpoint-N folder or a run directory); 'auto': resume if there is a checkpoint")
    train.add_argument("--force-resume", action="store_true",
                       help="resume even if the checkpoint was written with different settings")
    train.add_argument("--overwrite-output-dir", action="store_true",
                       help="replace the run in output_dir (its checkpoints and model are deleted first)")
    scale = train.add_argument_group("several processes (docs/distributed.md)")
    scale.add_argument("--num-processes", dest="flag_num_processes", type=int, default=None, metavar="N",
                       help="train on N processes (the option num_processes; default: every GPU of this machine)")
    scale.add_argument("--distributed", dest="flag_distributed", default=None, metavar="NAME|PATH",
                       help="a shipped accelerate config (see `aligntune launch-configs`) or an accelerate config "
                            "file (the option distributed)")
    scale.add_argument("--launcher", dest="flag_launcher", choices=("accelerate", "torchrun"), default=None,
                       help="what starts the processes (the option launcher; default accelerate)")
    legacy = train.add_argument_group("AlignTune 0.x flags (docs/migrating.md)")
    legacy.add_argument("--config", dest="legacy_config", metavar="CONFIG.yaml",
                        help="a config file (flat, or AlignTune 0.x's nested algo/model/datasets/train/logging)")
    for flag, key, kind in (("--model", "model_name", str), ("--dataset", "dataset_name", str),
                            ("--type", "algorithm", str), ("--algorithm", "algorithm", str),
                            ("--backend", "backend", str), ("--output-dir", "output_dir", str),
                            ("--epochs", "num_epochs", float), ("--batch-size", "batch_size", int),
                            ("--learning-rate", "learning_rate", float), ("--max-steps", "max_steps", int),
                            ("--beta", "beta", float)):
        legacy.add_argument(flag, dest=f"flag_{key}", type=kind, metavar=key.upper(), default=None,
                            help=f"the option {key}")

    evaluate = commands.add_parser("eval", help="evaluate a trained model (see docs/evaluation.md)")
    evaluate.add_argument("config", nargs="?", help="YAML file with EvalConfig options")
    evaluate.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                          help="override an option (value read as YAML; repeatable)")

    export = commands.add_parser("export", help="a loadable model from a run: merge LoRA, model card, upload")
    export.add_argument("run_dir", metavar="RUN_DIR", help="the output_dir of a finished run")
    export.add_argument("--output", metavar="DIR", help="where to write it (default: RUN_DIR-export; must be empty)")
    export.add_argument("--merge", action=argparse.BooleanOptionalAction, default=True,
                        help="merge a LoRA adapter into its base model (default) or copy the adapter (--no-merge)")
    export.add_argument("--eval-results", metavar="PATH",
                        help="results.json of `aligntune eval` (or its folder) for the model card; default: the "
                             "first RUN_DIR/*/results.json")
    export.add_argument("--push-to-hub", metavar="REPO", help="upload to this Hugging Face Hub repository (user/name)")
    export.add_argument("--public", action="store_true", help="create the Hub repository public (default: private)")
    commands.add_parser("info", help="versions, devices and plugins of this installation")
    configs = commands.add_parser("launch-configs", help="the accelerate configs aligntune ships, for `distributed:`")
    configs.add_argument("--path", metavar="NAME", help="print only the file of this config (for accelerate launch)")
    commands.add_parser("list-backends", help="installed training backends and whether they can run here")

    plugins = commands.add_parser("plugins", help="inspect installed plugins")
    plugin_commands = plugins.add_subparsers(dest="plugins_command", metavar="SUBCOMMAND")
    listing = plugin_commands.add_parser("list", help="list installed plugins and what they provide",
                                         parents=[command_flags])
    listing.add_argument("--json", action="store_true", help="print the records as JSON")
    return parser


def _flag_values(args: argparse.Namespace) -> dict[str, object]:
    return {name.removeprefix("flag_"): value for name, value in vars(args).items()
            if name.startswith("flag_") and value is not None}


def _train(args: argparse.Namespace, argv: list[str]) -> int:
    flags = _flag_values(args)
    if args.config is not None and args.legacy_config is not None:
        from aligntune.errors import ConfigError

        raise ConfigError("give the config file once: as CONFIG or as --config")
    config_file = args.config or args.legacy_config
    if config_file is None and not args.overrides and not flags:
        from aligntune.demo.run import run_demo

        return run_demo()
    from aligntune.core.backend_factory import create_trainer_from_config
    from aligntune.core.compat import announce_defaults, translate_options
    from aligntune.core.config import TrainConfig
    from aligntune.core.config_file import apply_overrides, load_yaml_options

    values, lines = load_yaml_options(config_file) if config_file else ({}, {})
    values = apply_overrides({**values, **flags}, args.overrides)
    translation = translate_options(values, lines, source=config_file)
    values, lines = translation.options, translation.lines
    if args.resume is not None:
        values["resume_from_checkpoint"] = args.resume
    if args.force_resume:
        values["force_resume"] = True
    if args.overwrite_output_dir:
        values["overwrite_output_dir"] = True
    if "log_format" not in values or any(arg.startswith("--log-format") for arg in argv):
        values["log_format"] = args.log_format  # the flag (or its default) unless the file sets it; a given flag wins
    config = TrainConfig.from_mapping(values, source=config_file, lines=lines)
    from aligntune import launch

    if launch.wants_launch(config):  # start the processes; each runs this same command and trains
        return _launch(config, argv)
    announce_defaults(translation)
    trainer = create_trainer_from_config(config)
    result = trainer.train()
    main_process, output_dir = trainer.is_world_process_zero(), trainer.args.output_dir
    del trainer  # nothing may hold the process group when it is destroyed
    _end_process_group()
    if main_process:  # under torchrun: one summary, not one per process
        summary = {"output_dir": output_dir, **result.metrics}
        if config.log_format == "json":  # one JSON line on stdout; nothing but JSON lines on stderr
            print(json.dumps(summary, default=str))
        else:
            print(json.dumps(summary, indent=2, default=str))
            print(f"\nmodel, tokenizer and aligntune_run.json in {output_dir}", file=sys.stderr)
    return 0


def _export(args: argparse.Namespace) -> int:
    from aligntune.export import export_model

    output = export_model(args.run_dir, args.output, merge=args.merge, eval_results=args.eval_results,
                          push_to_hub=args.push_to_hub, private=not args.public)
    print(output)
    return 0


def _launch(config, argv: list[str]) -> int:
    import subprocess

    import structlog

    from aligntune import launch

    command = launch.launch_command(config, argv)
    structlog.get_logger("aligntune.launch").info(
        "launching", processes=config.num_processes or launch.default_num_processes(),
        distributed=launch.resolve_launch_config(config.distributed or "ddp").describe(),
        command=" ".join(command))
    return subprocess.run(command, check=False, env={**os.environ, launch.LAUNCHED_ENV: "1"}).returncode


def _launch_configs(args: argparse.Namespace) -> int:
    from aligntune import launch

    if args.path:
        print(launch.resolve_launch_config(args.path).path)
        return 0
    for name, path in launch.shipped_configs().items():
        print(f"{name:<15}{launch.resolve_launch_config(name).describe():<36}{path}")
    return 0


def _end_process_group() -> None:
    """Under torchrun: leave the process group before the interpreter exits (after success only: on a failure other
    processes may still be inside a collective). Without it, gloo's worker threads can abort the exiting process."""
    distributed = sys.modules.get("torch.distributed")
    if distributed is not None and distributed.is_available() and distributed.is_initialized():
        import gc

        gc.collect()  # the trainer's DDP wrapper holds the group: free it first
        distributed.destroy_process_group()


def _eval(args: argparse.Namespace) -> int:
    from aligntune.core.config_file import apply_overrides, load_yaml_options
    from aligntune.eval.core import EvalConfig, run_eval
    from aligntune.eval.report import format_table

    values, lines = load_yaml_options(args.config) if args.config else ({}, {})
    values = apply_overrides(values, args.overrides)
    config = EvalConfig.from_mapping(values, source=args.config, lines=lines)
    results = run_eval(config)  # with strict_metrics, a metric that cannot be computed is an error (exit 2)
    print()
    print(format_table(results, list(dict.fromkeys(config.metrics)), results.not_computed))
    print(f"\nresults.json, per_example.jsonl, report.md and reward_margins.png in {config.output_dir}")
    return 0


def _info() -> int:
    """Versions, devices and plugins: what a bug report needs."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    print(f"aligntune {__version__} (Python {platform.python_version()}, {platform.platform()})")
    for name in ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "unsloth"):
        try:
            print(f"  {name:<13}{version(name)}")
        except PackageNotFoundError:
            print(f"  {name:<13}not installed")
    try:
        import torch

        if torch.cuda.is_available():
            names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
            print(f"devices: {torch.cuda.device_count()} CUDA ({names})")
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            print("devices: Apple MPS")
        else:
            print(f"devices: CPU only ({torch.get_num_threads()} threads)")
    except ImportError:
        print("devices: unknown (torch is not installed)")
    from aligntune.plugins import list_plugins

    print("plugins: " + ", ".join(f"{p.name} {p.version} ({p.status})" for p in list_plugins()))
    return 0


def _list_backends() -> int:
    from aligntune.core.backend_factory import list_backends

    backends = list_backends()
    if not backends:
        print("No training backend is installed: pip install ./plugins/aligntune-backend-trl")
        return 0
    for entry in backends:
        state = "available" if entry["available"] else f"unavailable: {entry['reason']}"
        print(f"{entry['name']:<10}{state}  ({entry['distribution']} {entry['version']}) - {entry['summary']}")
    return 0


def _plugins_list(args: argparse.Namespace) -> int:
    from aligntune.plugins import list_plugins

    plugins = list_plugins()
    if args.json:
        print(json.dumps([p.as_dict() for p in plugins], indent=2))
        return 0
    if not plugins:
        print("No aligntune plugins are installed.")
        return 0
    rows = [("Name", "Version", "Status", "Provides")]
    for p in plugins:
        provides = "; ".join(f"{kind.replace('_', ' ')}: {', '.join(names)}" for kind, names in p.provides.items() if names)
        rows.append((p.name, p.version, p.status, provides or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3])
    problems = [p for p in plugins if p.error]
    for p in problems:
        print(f"\n{p.name} ({p.status}): {p.error}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from aligntune.logging_setup import configure_logging

    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    configure_logging(args.log_format, args.log_level)
    try:
        if args.command == "train":
            return _train(args, argv)
        if args.command == "eval":
            return _eval(args)
        if args.command == "info":
            return _info()
        if args.command == "export":
            return _export(args)
        if args.command == "launch-configs":
            return _launch_configs(args)
        if args.command == "list-backends":
            return _list_backends()
        if args.command == "plugins" and args.plugins_command == "list":
            return _plugins_list(args)
        if args.command == "plugins":
            parser.parse_args(["plugins", "--help"])
        parser.print_help()
        return 0
    except AlignTuneError as exc:
        if args.log_format == "json":
            print(json.dumps({"event": "error", "level": "error", "error": str(exc), "exit_code": exc.exit_code}),
                  file=sys.stderr)
        else:
            print(f"aligntune: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("aligntune: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        return 0
