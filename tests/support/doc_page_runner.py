"""Runs the code blocks of one documentation page, in order, in one process (tests/test_doc_examples.py starts it).

    python doc_page_runner.py PLAN.json

The plan (written by the test) holds the page's blocks and the stand-ins; the current directory is the page's
scratch directory, holding the files the page names (`my_pairs.jsonl`, ...). Each block's outcome is appended to
the plan's `results` file as one JSON line, `{"id": "docs/x.md:12", "error": null | "traceback"}`, so the test names
the block that failed; the blocks after a failure are not run (they usually build on it).

What each kind of block does:
  python  executed in a namespace shared by the page's python blocks (they build on each other); tracebacks carry
          the page's file name and line numbers. A block whose first line is `# some/file.py` is that file: it is
          written, not executed. After a block that defines `test_*` functions, they are called.
  yaml    read as a config file is read (`aligntune.core.config_file.parse_yaml`), translated
          (`translate_options`) and built (`TrainConfig.from_mapping`, or `EvalConfig.from_mapping` when it has
          `model_path`); a fragment without `model_name` is built over a minimal config. A complete training config
          is trained (`aligntune train`), into a scratch output_dir, on one process. `# name.yaml` first: written there.
  bash    each command is `aligntune ...` and runs in this process (`aligntune.cli.main`) and must exit 0.
  toml    parsed; `# pyproject.toml` first: written. Entry points in the `aligntune` group must import (checked at
          the end of the page, after the page's files are written).
  json    parsed.

Stand-ins (the plan's `stand_ins`, defined and explained in the test) swap, at the API entry points, hub models for
the tiny model, hub datasets for local copies, and cap training (a few steps, fp32, one process, no tracker).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import tempfile
import traceback
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

PLAN = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
STAND_INS = PLAN["stand_ins"]
RESULTS = Path(PLAN["results"])
sys.path.insert(0, os.getcwd())  # the page's own files (a plugin example's modules)


def _swap_model(name):
    return STAND_INS["models"].get(name, name) if isinstance(name, str) else name


def _install_stand_ins() -> None:
    import attrs

    import aligntune.core.backend_factory as factory
    import aligntune.data as data
    import aligntune.eval.core as eval_core

    load_preference_data = data.load_preference_data

    def load_with_local_copies(dataset_name, **kwargs):
        swap = STAND_INS["datasets"].get(dataset_name)
        if swap is not None and kwargs.get("data_files") is None:
            kwargs = {**kwargs, **swap["set"]}
            dataset_name = swap.get("dataset_name", dataset_name)
        return load_preference_data(dataset_name, **kwargs)

    data.load_preference_data = load_with_local_copies
    for module in list(sys.modules.values()):  # modules that imported it already (aligntune.eval.data)
        if getattr(module, "load_preference_data", None) is load_preference_data:
            module.load_preference_data = load_with_local_copies

    create_trainer_from_config = factory.create_trainer_from_config

    def create_capped(config, **kwargs):
        changes = dict(STAND_INS["training"])
        changes["model_name"] = _swap_model(config.model_name)
        if config.max_steps is not None:
            changes["max_steps"] = min(config.max_steps, changes["max_steps"])
        if config.max_seq_length > changes["max_seq_length"]:
            changes["max_seq_length"] = changes["max_seq_length"]
        else:
            changes.pop("max_seq_length")
        if config.backend in STAND_INS["backends"]:
            changes["backend"] = STAND_INS["backends"][config.backend]
        return create_trainer_from_config(attrs.evolve(config, **changes), **kwargs)

    factory.create_trainer_from_config = create_capped

    run_eval = eval_core.run_eval

    def run_eval_with_stand_ins(config, *args, **kwargs):
        fields = ("model_path", "reference_model_path", "base_model", "judge_model_path")
        config = attrs.evolve(config, **{name: _swap_model(getattr(config, name)) for name in fields})
        return run_eval(config, *args, **kwargs)

    eval_core.run_eval = run_eval_with_stand_ins


def _report(block: dict, error: str | None) -> None:
    with RESULTS.open("a", encoding="utf-8") as out:
        out.write(json.dumps({"id": block["id"], "error": error}) + "\n")


def _write(name: str, text: str) -> None:
    path = Path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


NAMESPACE: dict = {"__name__": "__doc_page__", "tomllib": tomllib}
ENTRY_POINT_MODULES: list[str] = []


def run_python(block: dict) -> None:
    if block["file_name"]:
        _write(block["file_name"], block["source"])
        return
    before = set(NAMESPACE)
    # Blank lines first: a traceback's line numbers are the page's.
    code = compile("\n" * block["line"] + block["source"], block["path"], "exec")
    exec(code, NAMESPACE)  # noqa: S102
    for name in sorted(set(NAMESPACE) - before):
        if name.startswith("test_") and callable(NAMESPACE[name]):
            NAMESPACE[name]()


def _scratch_output_dir() -> str:
    return tempfile.mkdtemp(prefix="run-", dir=os.getcwd())


def run_yaml(block: dict) -> None:
    from aligntune.core.backend_factory import resolve_config
    from aligntune.core.compat import translate_options
    from aligntune.core.config import TrainConfig
    from aligntune.core.config_file import parse_yaml
    from aligntune.eval.config import EvalConfig

    values = parse_yaml(block["source"])
    assert isinstance(values, dict), f"a config is a mapping of option: value, got {type(values).__name__}"
    if block["file_name"]:
        _write(block["file_name"], block["source"])
    if "model_path" in values:
        EvalConfig.from_mapping(values, source=block["id"])
        return
    complete = "model_name" in values or "model_name_or_path" in values
    base = {key: value for key, value in STAND_INS["base_config"].items()
            if not (key == "dataset_name" and "datasets" in values)}  # a mixture replaces dataset_name
    options = translate_options(values if complete else {**base, **values}).options
    resolve_config(TrainConfig.from_mapping(options, source=block["id"]))
    if not complete:
        return
    # Trained as written, but into a scratch directory (the page's commands may use its output_dir) and on one
    # process (what distributed/num_processes/launcher ask for needs several GPUs; tests/test_accelerate_launch.py).
    trained = {key: value for key, value in values.items() if key not in ("distributed", "num_processes", "launcher")}
    trained["output_dir"] = _scratch_output_dir()
    path = Path(tempfile.mkdtemp(dir=os.getcwd())) / "config.yaml"
    import yaml

    path.write_text(yaml.safe_dump(trained), encoding="utf-8")
    run_command(["aligntune", "train", str(path)])


def run_command(argv: list[str]) -> None:
    from aligntune.cli import main

    assert argv[0] == "aligntune", f"not an aligntune command: {shlex.join(argv)}"
    code = main(argv[1:])
    assert code == 0, f"`{shlex.join(argv)}` exited {code}"


def run_bash(block: dict) -> None:
    for command in block["commands"]:
        run_command(command)


def run_toml(block: dict) -> None:
    values = tomllib.loads(block["source"])
    if block["file_name"]:
        _write(block["file_name"], block["source"])
    ENTRY_POINT_MODULES.extend(
        target.split(":")[0]
        for target in values.get("project", {}).get("entry-points", {}).get("aligntune", {}).values())


def run_json(block: dict) -> None:
    json.loads(block["source"])


def main() -> int:
    _install_stand_ins()
    runners = {"python": run_python, "yaml": run_yaml, "bash": run_bash, "toml": run_toml, "json": run_json}
    exec(compile(PLAN.get("setup", ""), "page setup (tests/test_doc_examples.py)", "exec"), NAMESPACE)  # noqa: S102
    failed = None
    for block in PLAN["blocks"]:
        if failed is not None:
            _report(block, f"not run: the block at {failed} failed before it")
            continue
        print(f"===== {block['id']} ({block['lang']})", flush=True)
        try:
            runners[block["lang"]](block)
        except BaseException:  # noqa: BLE001  (SystemExit from a command included)
            failed = block["id"]
            _report(block, traceback.format_exc())
        else:
            _report(block, None)
    if failed is None:
        import importlib

        for module in ENTRY_POINT_MODULES:
            importlib.import_module(module)
        exec(compile(PLAN.get("check", ""), "page check (tests/test_doc_examples.py)", "exec"), NAMESPACE)  # noqa: S102
    return 0


if __name__ == "__main__":
    sys.exit(main())
