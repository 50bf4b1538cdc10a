"""The bad-input corpus: every user mistake ends in one clear line (what, where, what to do), a non-zero exit status
and no traceback. Each case runs the real CLI entry point (`aligntune.cli.main`, in process for speed; a few cases
in a subprocess) against real files: a tiny model, real-looking data, broken copies of both."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from aligntune.cli import main

CHAT = [{"role": "user", "content": "hi"}]


def _reply(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _model_copy(tiny_model: Path, target: Path, drop: tuple[str, ...] = ()) -> Path:
    shutil.copytree(tiny_model, target)
    for pattern in drop:
        for file in target.glob(pattern):
            file.unlink()
    return target


class Case:
    """One bad input: the YAML options (or a full argv), the files it needs, and what the error must say."""

    def __init__(self, name: str, options: dict | None = None, *, message: str, argv: list[str] | None = None,
                 setup: Callable[[Path, Path, Path], dict] | None = None, command: str = "train", code: int = 2,
                 raw_yaml: str | None = None):
        self.name, self.options, self.message, self.argv = name, options or {}, message, argv or []
        self.setup, self.command, self.code, self.raw_yaml = setup, command, code, raw_yaml


def _pairs(rows: list) -> Callable[[Path, Path, Path], dict]:
    return lambda tmp, model, data: {"dataset_name": str(_jsonl(tmp / "bad.jsonl", rows))}


def _raw_data(content: bytes, name: str = "bad.jsonl") -> Callable[[Path, Path, Path], dict]:
    def setup(tmp: Path, model: Path, data: Path) -> dict:
        (tmp / name).write_bytes(content)
        return {"dataset_name": str(tmp / name)}

    return setup


def _model(drop: tuple[str, ...] = (), truncate: bool = False) -> Callable[[Path, Path, Path], dict]:
    def setup(tmp: Path, model: Path, data: Path) -> dict:
        target = _model_copy(model, tmp / "model", drop)
        if truncate:
            weights = target / "model.safetensors"
            weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        return {"model_name": str(target)}

    return setup


def _empty_dir(tmp: Path, model: Path, data: Path) -> dict:
    (tmp / "empty").mkdir()
    return {"model_name": str(tmp / "empty")}


def _unfinished_run(tmp: Path, model: Path, data: Path) -> dict:
    (tmp / "run").mkdir()
    (tmp / "run" / "aligntune_run.json").write_text('{"run": {"stop_reason": "non-finite"}}', encoding="utf-8")
    return {"model_name": str(tmp / "run")}


def _file_as(key: str) -> Callable[[Path, Path, Path], dict]:
    def setup(tmp: Path, model: Path, data: Path) -> dict:
        (tmp / "a-file").write_text("x", encoding="utf-8")
        return {key: str(tmp / "a-file")}

    return setup


def _under_a_file(tmp: Path, model: Path, data: Path) -> dict:
    (tmp / "a-file").write_text("x", encoding="utf-8")
    return {"output_dir": str(tmp / "a-file" / "run")}


def _busy_output(tmp: Path, model: Path, data: Path) -> dict:
    (tmp / "out").mkdir(exist_ok=True)
    (tmp / "out" / "aligntune_run.json").write_text("{}", encoding="utf-8")
    return {}


def _eval_model(tmp: Path, model: Path, data: Path) -> dict:
    return {"model_path": str(model), "reference_model_path": str(model)}


def _eval_corrupt_record(tmp: Path, model: Path, data: Path) -> dict:
    target = _model_copy(model, tmp / "trained")
    (target / "aligntune_run.json").write_text('{"beta": 0.1,', encoding="utf-8")
    return {"model_path": str(target)}


TRAIN_CASES = [
    # values: type, range, finiteness
    Case("beta zero", {"beta": 0}, message="key 'beta': must be a number > 0, got 0"),
    Case("beta inf", raw_yaml="beta: .inf", message="key 'beta': must be a number > 0, got inf"),
    Case("beta nan", raw_yaml="beta: .nan", message="key 'beta': must be a number > 0, got nan"),
    Case("negative learning rate", raw_yaml="learning_rate: -1e-6", message="key 'learning_rate': must be a number > 0"),
    Case("learning rate text", {"learning_rate": "fast"}, message="key 'learning_rate': must be a number > 0, got 'fast'"),
    Case("seed negative", {"seed": -1}, message="key 'seed': must be an integer in [0, 2**32)"),
    Case("seed too large", {"seed": 2**40}, message="key 'seed': must be an integer in [0, 2**32)"),
    Case("seed float", {"seed": 1.5}, message="key 'seed': must be an integer in [0, 2**32)"),
    Case("report_to number", {"report_to": 5}, message="key 'report_to': must be a tracker name"),
    Case("report_to numbers", {"report_to": [1, 2]}, message="key 'report_to': must be a tracker name"),
    Case("batch size zero", {"batch_size": 0}, message="key 'batch_size': must be an integer >= 1"),
    Case("batch size fraction", {"batch_size": 2.5}, message="key 'batch_size': must be an integer >= 1"),
    Case("num_epochs zero", {"num_epochs": 0}, message="key 'num_epochs': must be a number > 0"),
    Case("max_seq_length 1", {"max_seq_length": 1}, message="key 'max_seq_length': must be an integer >= 2"),
    Case("prompt longer than sequence", {"max_prompt_length": 600},
         message="key 'max_prompt_length': must be smaller than max_seq_length"),
    Case("label smoothing 0.5", {"label_smoothing": 0.5}, message="key 'label_smoothing': must be a number in [0, 0.5)"),
    Case("precision int8", {"precision": "int8"}, message="key 'precision': must be one of"),
    Case("algorithm ppo", {"algorithm": "ppo"}, message="run.yaml, line 4: algorithm 'ppo': aligntune trains the DPO family only"),
    Case("lora dropout 1", {"lora_dropout": 1}, message="key 'lora_dropout': must be a number in [0, 1)"),
    Case("use_lora text", {"use_lora": "yes"}, message="key 'use_lora': must be true, false or null"),
    Case("on_nonfinite ignore", {"on_nonfinite": "ignore"}, message="key 'on_nonfinite': must be one of"),
    Case("max_nonfinite_steps negative", {"max_nonfinite_steps": -1},
         message="key 'max_nonfinite_steps': must be an integer >= 0"),
    Case("resume number", {"resume_from_checkpoint": 3}, message="key 'resume_from_checkpoint': must be true"),
    Case("resume and overwrite", {"resume_from_checkpoint": True, "overwrite_output_dir": True},
         message="cannot be combined with resume_from_checkpoint"),
    Case("force without resume", {"force_resume": True}, message="force_resume': only applies when resuming"),
    Case("loss params nan", raw_yaml="loss_params: {dpop_lambda: .nan}",
         message="key 'loss_params': dpop_lambda is not a finite number"),
    Case("training_args inf", raw_yaml="training_args: {warmup_steps: .inf}",
         message="key 'training_args': warmup_steps is not a finite number"),
    Case("loss weights inf", raw_yaml="loss_weights: [1.0, .inf]", message="key 'loss_weights': must be a list of numbers"),
    # names
    Case("misspelt option", {"num_epoch": 1}, message="unknown option. Did you mean 'num_epochs'?"),
    Case("unknown loss", {"loss_type": "sigmoud"}, message="sigmoid"),
    Case("unknown backend", {"backend": "nope"}, message="trl"),
    Case("backend not installed", {"backend": "unsloth"}, message="pip install ./plugins/aligntune-backend-unsloth"),
    Case("training_args managed", {"training_args": {"learning_rate": 1}},
         message="training_args.learning_rate: set it with the aligntune option 'learning_rate'"),
    Case("training_args unknown", {"training_args": {"warmup_stepz": 1}},
         message="training_args.warmup_stepz: not a TRL DPOConfig field. Did you mean 'warmup_steps'?"),
    Case("training_args resume", {"training_args": {"resume_from_checkpoint": "x"}},
         message="set it with the aligntune option 'resume_from_checkpoint'"),
    # the YAML file itself
    Case("duplicate key", raw_yaml="beta: 0.1\nbeta: 0.2", message="key 'beta' is given twice (lines 4 and 5)"),
    Case("duplicate nested key", raw_yaml="training_args:\n  warmup_steps: 1\n  warmup_steps: 2",
         message="key 'warmup_steps' is given twice (lines 5 and 6)"),
    Case("invalid yaml", raw_yaml="beta: [", message="invalid YAML"),
    Case("yaml list", argv=["LIST"], message="the config must be a mapping of option: value"),
    Case("missing file", argv=["MISSING"], message="config file not found"),
    Case("config is a directory", argv=["DIRECTORY"], message="is a directory; give a YAML file"),
    Case("config not utf-8", argv=["LATIN1"], message="line 2: not UTF-8 text (byte 0xe9)"),
    Case("missing required", argv=["NO_DATASET"], message="missing required option(s): dataset_name"),
    Case("--set without =", argv=["--set", "beta"], message="--set expects key=value, got 'beta'"),
    Case("--set bad value", argv=["--set", "beta=abc"], message="key 'beta': must be a number > 0, got 'abc'"),
    Case("--set into a number", {"beta": 0.1}, argv=["--set", "beta.x=1"], message="--set beta.x: 'beta' is not a mapping"),
    # model directories
    Case("model dir missing", setup=lambda tmp, m, d: {"model_name": str(tmp / "nope" / "model")},
         message="no such directory. Give a local model directory"),
    Case("model dir relative missing", {"model_name": "./no-such-model"}, message="model_name='./no-such-model': no such"),
    Case("model dir empty", setup=_empty_dir, message="no config.json in"),
    Case("model dir is a file", setup=_file_as("model_name"), message="is a file; a model is a directory"),
    Case("model dir without weights", setup=_model(drop=("*.safetensors",)), message="no weights in"),
    Case("model dir without tokenizer", setup=_model(drop=("tokenizer*",)), message="no tokenizer files in"),
    Case("truncated weights", setup=_model(truncate=True), message="the weights cannot be read"),
    Case("unfinished run as model", setup=_unfinished_run, message="holds an aligntune run record but no model"),
    # output directories
    Case("output_dir is a file", setup=_file_as("output_dir"), message="is a file, not a directory"),
    Case("output_dir under a file", setup=_under_a_file, message="cannot create it"),
    Case("output_dir holds a run", setup=_busy_output, message="already holds another training run"),
    # data
    Case("data file missing", setup=lambda tmp, m, d: {"dataset_name": str(tmp / "none.jsonl")},
         message="dataset file not found"),
    Case("data unsupported type", setup=_raw_data(b"a,b\n", "pairs.txt"), message="unsupported file type"),
    Case("data invalid json", setup=_raw_data(b'{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": \n'),
         message="bad.jsonl, line 2, column"),
    Case("data missing column", setup=_pairs([{"prompt": "a", "chosen": "b", "rejectd": "c"}]),
         message="line 1: missing column(s) rejected; found: chosen, prompt, rejectd"),
    Case("data wrong type", setup=_pairs([{"prompt": "a", "chosen": 3, "rejected": "c"}]),
         message="line 1, column 'chosen': expected a string or a list of {role, content} messages, got int"),
    Case("data mixed rows", setup=_pairs([{"prompt": "a", "chosen": "b", "rejected": "c"},
                                          {"prompt": CHAT, "chosen": _reply("b"), "rejected": _reply("c")}]),
         message="line 2: this row is message lists (conversational) but the first row"),
    Case("data mixed columns", setup=_pairs([{"prompt": CHAT, "chosen": "b", "rejected": "c"}]),
         message="line 1: columns mix plain strings and message lists"),
    Case("data bad role", setup=_pairs([{"prompt": [{"role": "banana", "content": "hi"}], "chosen": _reply("b"),
                                         "rejected": _reply("c")}]),
         message="line 1, column 'prompt', message 0: role 'banana' is not allowed in a prompt"),
    Case("data user in completion", setup=_pairs([{"prompt": CHAT, "chosen": [{"role": "user", "content": "b"}],
                                                   "rejected": _reply("c")}]),
         message="column 'chosen', message 0: role 'user' is not allowed in a completion"),
    Case("data not utf-8", setup=_raw_data(b'{"prompt": "a", "chosen": "b", "rejected": "c"}\n'
                                           b'{"prompt": "caf\xe9", "chosen": "b", "rejected": "c"}\n'),
         message="bad.jsonl, line 2, column 16: not UTF-8 text (byte 0xe9)"),
    Case("data split missing", setup=lambda tmp, m, d: {"data_files": {"test": str(d)}},
         message="data_files has no entry for split 'train'"),
    Case("every pair too long", {"max_seq_length": 4}, message="no train pair fits max_seq_length=4"),
]

EVAL_CASES = [
    Case("eval model_path missing", command="eval", setup=lambda tmp, m, d: {"model_path": str(tmp / "nope")},
         message="model_path="),
    Case("eval model_path empty", command="eval", setup=lambda tmp, m, d: _empty_dir(tmp, m, d) and
         {"model_path": str(tmp / "empty")}, message="model_path="),
    Case("eval output_dir is a file", command="eval",
         setup=lambda tmp, m, d: {**_eval_model(tmp, m, d), **_file_as("output_dir")(tmp, m, d), "split": "train"},
         message="is a file, not a directory: give a directory for the evaluation results"),
    Case("eval single file without split", command="eval", setup=_eval_model,
         message="is a single file with no splits, and split is not set"),
    Case("eval corrupt record", command="eval", setup=_eval_corrupt_record,
         message="aligntune_run.json, line 1, column 14: not a valid run record"),
    Case("eval unknown metric", command="eval", setup=lambda tmp, m, d: {**_eval_model(tmp, m, d),
                                                                         "metrics": ["reward_margn"]},
         message="reward_margin"),
    Case("eval beta inf", command="eval", raw_yaml="beta: .inf", setup=_eval_model, message="key 'beta'"),
]


def _write_config(case: Case, tmp: Path, tiny_model: Path, pairs_jsonl: Path) -> list[str]:
    if case.command == "train":
        options = {"model_name": str(tiny_model), "dataset_name": str(pairs_jsonl), "output_dir": str(tmp / "out")}
    else:
        options = {"dataset_name": str(pairs_jsonl), "output_dir": str(tmp / "eval")}
    if case.setup is not None:
        options.update(case.setup(tmp, tiny_model, pairs_jsonl))
    options.update(case.options)
    config = tmp / "run.yaml"
    if case.argv and case.argv[0].isupper():  # a broken config file rather than broken options
        special = case.argv[0]
        if special == "LIST":
            config.write_text("- model_name\n- dataset_name\n", encoding="utf-8")
        elif special == "MISSING":
            config = tmp / "missing.yaml"
        elif special == "DIRECTORY":
            config = tmp
        elif special == "LATIN1":
            config.write_bytes(f"model_name: {tiny_model}\nbeta: caf\xe9\n".encode("latin-1"))
        elif special == "NO_DATASET":
            config.write_text(f"model_name: {tiny_model}\n", encoding="utf-8")
        return [case.command, str(config)]
    text = "".join(f"{key}: {json.dumps(value)}\n" for key, value in options.items())
    config.write_text(text + (case.raw_yaml + "\n" if case.raw_yaml else ""), encoding="utf-8")
    return [case.command, str(config), *case.argv]


@pytest.mark.parametrize("case", TRAIN_CASES + EVAL_CASES, ids=lambda case: case.name)
def test_a_user_mistake_is_one_clear_line(case, tiny_model, pairs_jsonl, tmp_path, capsys):
    argv = _write_config(case, tmp_path, tiny_model, pairs_jsonl)
    code = main(argv)  # a raw exception here is what a user would see as a traceback
    err = capsys.readouterr().err
    assert code == case.code, err[-2000:]
    message = err[err.index("aligntune: error:"):]
    assert case.message in message, message
    assert "Traceback" not in err


def test_the_corpus_is_large():
    assert len(TRAIN_CASES) + len(EVAL_CASES) >= 60


def test_numbers_are_read_as_people_write_them(tiny_model, pairs_jsonl, tmp_path):
    """`5e-6`, `1E-5` and `.5` are numbers (YAML 1.1 would read the first two as strings), in files and --set."""
    from aligntune.core.config import TrainConfig
    from aligntune.core.config_file import apply_overrides, load_yaml_options

    config_file = tmp_path / "run.yaml"
    config_file.write_text(f"model_name: {tiny_model}\ndataset_name: {pairs_jsonl}\nlearning_rate: 1E-5\n"
                           "beta: .5\ntraining_args: {warmup_steps: 1e-1}\n", encoding="utf-8")
    values, lines = load_yaml_options(config_file)
    values = apply_overrides(values, ["learning_rate=5e-6"])
    config = TrainConfig.from_mapping(values, source=str(config_file), lines=lines)
    assert (config.learning_rate, config.beta, config.training_args["warmup_steps"]) == (5e-6, 0.5, 0.1)
    assert TrainConfig.from_mapping(load_yaml_options(config_file)[0]).learning_rate == 1e-5


def test_a_bom_is_accepted(tiny_model, tmp_path):
    from aligntune.data import load_preference_dataset

    rows = [{"prompt": "a", "chosen": "b", "rejected": "c"}]
    for name, content in (("pairs.jsonl", "".join(json.dumps(r) + "\n" for r in rows)),
                          ("pairs.csv", "prompt,chosen,rejected\na,b,c\n"),
                          ("pairs.json", json.dumps(rows))):
        path = tmp_path / name
        path.write_bytes(b"\xef\xbb\xbf" + content.encode("utf-8"))  # what Excel and Windows editors write
        assert load_preference_dataset(str(path))[0] == rows[0], name


def test_eval_with_an_explicit_split_on_a_single_file_is_allowed(tiny_model, pairs_jsonl, tmp_path):
    from aligntune.eval.core import EvalConfig, run_eval

    results = run_eval(EvalConfig(model_path=str(tiny_model), reference_model_path=str(tiny_model), split="train",
                                  output_dir=str(tmp_path / "eval"), dataset_name=str(pairs_jsonl), max_samples=8,
                                  metrics=["reward_margin"]))
    assert results["reward_margin"] == pytest.approx(0.0, abs=1e-6)  # the model is its own reference


def test_mistakes_in_a_subprocess_print_no_traceback(tiny_model, tmp_path):
    """The same contract through the installed console script's module, in its own process."""
    config = tmp_path / "run.yaml"
    config.write_text(f"model_name: {tiny_model}\ndataset_name: d.jsonl\nseed: -1\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "aligntune", "train", str(config)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{config}, line 3, key 'seed': must be an integer in [0, 2**32)" in proc.stderr


LEGACY_CASES = [
    Case("0.x column_mapping of a column the data lacks", {"column_mapping": {"q": "prompt"}},
         message="line 1: column_mapping renames 'q', which this row does not have; its columns: chosen, prompt"),
    Case("0.x val_split_ratio", {"val_split_ratio": 0.1},
         message="line 4: option 'val_split_ratio' (AlignTune 0.x) is not supported: give held-out data"),
    Case("0.x use_peft and use_lora", {"use_peft": True, "use_lora": False},
         message="line 4: options 'use_peft' and 'use_lora' are the same option; give one"),
    Case("0.x 8-bit", {"quantization": {"load_in_8bit": True}}, message="line 4: quantization: load_in_8bit not"),
    Case("training_args not a mapping", {"training_args": 5}, message="key 'training_args': must be a mapping"),
    Case("near-miss of an accepted other name", raw_yaml="per_device_batch: 4",
         message="key 'per_device_batch': unknown option. Did you mean 'per_device_batch_size'?"),
    Case("a mixture next to dataset_name", raw_yaml="datasets: [{name: a}, {name: b}]",
         message="key 'datasets': give either dataset_name"),
]


@pytest.mark.parametrize("case", LEGACY_CASES, ids=lambda case: case.name)
def test_an_alignTune_0x_mistake_is_one_clear_line(case, tiny_model, pairs_jsonl, tmp_path, capsys):
    test_a_user_mistake_is_one_clear_line(case, tiny_model, pairs_jsonl, tmp_path, capsys)
