"""The training configuration: defaults from the guide, validation, YAML with line numbers, --set overrides."""

from __future__ import annotations

import pytest

from aligntune.core.config import TrainConfig
from aligntune.core.config_file import apply_overrides, load_yaml_options
from aligntune.errors import ConfigError, ResumeError, UnknownOptionError

REQUIRED = {"model_name": "Qwen/Qwen3-0.6B", "dataset_name": "Anthropic/hh-rlhf"}


def test_defaults_follow_the_dpo_guide():
    config = TrainConfig.from_mapping(REQUIRED)
    assert (config.algorithm, config.backend, config.num_epochs, config.batch_size) == ("dpo", "trl", 1, 4)
    assert (config.learning_rate, config.beta, config.max_seq_length) == (1e-6, 0.1, 512)
    assert (config.reference_free, config.label_smoothing, config.loss_type) == (False, 0.0, "sigmoid")
    assert config.max_steps is None
    assert config.output_dir is None  # a new directory per run: see test_default_output_dir_is_new_per_run
    assert (config.on_nonfinite, config.resume_from_checkpoint, config.overwrite_output_dir) == ("stop", None, False)


def test_default_output_dir_is_new_per_run(tmp_path, monkeypatch):
    from aligntune.runs import resolve_output_dir

    monkeypatch.chdir(tmp_path)
    config = TrainConfig.from_mapping(REQUIRED)
    first, second = resolve_output_dir(config), resolve_output_dir(config)
    assert first != second
    assert all(path.startswith("output/Qwen3-0.6B-dpo/") and (tmp_path / path).is_dir() for path in (first, second))
    # Resuming without an output_dir looks for the newest run with a complete checkpoint; there is none here.
    with pytest.raises(ResumeError, match="nothing to resume: no run under output/Qwen3-0.6B-dpo"):
        resolve_output_dir(TrainConfig.from_mapping({**REQUIRED, "resume_from_checkpoint": True}))
    assert resolve_output_dir(TrainConfig.from_mapping({**REQUIRED, "resume_from_checkpoint": "auto"})) != second


def test_unknown_option_is_a_type_error_naming_the_close_match():
    with pytest.raises(TypeError, match=r"option 'num_epoch': unknown option\. Did you mean 'num_epochs'\?"):
        TrainConfig.from_mapping({**REQUIRED, "num_epoch": 2})
    assert issubclass(UnknownOptionError, TypeError)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("beta", 0, "option 'beta': must be a number > 0, got 0"),
        ("label_smoothing", 0.5, r"option 'label_smoothing': must be a number in \[0, 0.5\)"),
        ("batch_size", 0, "option 'batch_size': must be an integer >= 1"),
        ("batch_size", 2.5, "option 'batch_size': must be an integer >= 1"),
        ("reference_free", "yes", "option 'reference_free': must be true or false"),
        # from_mapping reads the names and values create_rl_trainer does: its message (aligntune.core.compat)
        ("algorithm", "ppo", "algorithm 'ppo': aligntune trains the DPO family only"),
        ("max_prompt_length", 600, "option 'max_prompt_length': must be smaller than max_seq_length"),
        ("precision", "int8", "option 'precision': must be one of"),
        ("beta", float("inf"), "option 'beta': must be a number > 0, got inf"),
        ("learning_rate", float("nan"), "option 'learning_rate': must be a number > 0, got nan"),
        ("loss_weights", [1.0, float("inf")], "option 'loss_weights': must be a list of numbers"),
        ("loss_params", {"dpop_lambda": float("nan")}, "option 'loss_params': dpop_lambda is not a finite number"),
        ("training_args", {"warmup_steps": float("-inf")}, "option 'training_args': warmup_steps is not a finite"),
        ("seed", -1, r"option 'seed': must be an integer in \[0, 2\*\*32\)"),
        ("seed", 2**40, r"option 'seed': must be an integer in \[0, 2\*\*32\)"),
        ("on_nonfinite", "ignore", "option 'on_nonfinite': must be one of \\('stop', 'skip'\\)"),
        ("resume_from_checkpoint", 3, "option 'resume_from_checkpoint': must be true"),
    ],
)
def test_bad_values_name_the_key(key, value, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_mapping({**REQUIRED, key: value})


def test_missing_required_options():
    with pytest.raises(ConfigError, match="missing required option.*dataset_name"):
        TrainConfig.from_mapping({"model_name": "m"})


def test_yaml_errors_name_file_line_and_key(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model_name: m\ndataset_name: d\n\nbeta: -2\n", encoding="utf-8")
    values, lines = load_yaml_options(path)
    with pytest.raises(ConfigError, match=rf"{path}, line 4, key 'beta': must be a number > 0"):
        TrainConfig.from_mapping(values, source=str(path), lines=lines)
    path.write_text("model_name: m\ndataset_name: d\nlerning_rate: 1e-5\n", encoding="utf-8")
    values, lines = load_yaml_options(path)
    with pytest.raises(UnknownOptionError, match=r"line 3, key 'lerning_rate'.*Did you mean 'learning_rate'"):
        TrainConfig.from_mapping(values, source=str(path), lines=lines)


def test_invalid_yaml_names_line_and_column(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model_name: m\ndataset_name: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"{path}, line \d+, column \d+: invalid YAML"):
        load_yaml_options(path)


def test_overrides_are_parsed_as_yaml_and_reach_into_mappings():
    values = apply_overrides({"beta": 0.1}, ["beta=0.5", "use_lora=true", "training_args.warmup_steps=0.1"])
    assert values == {"beta": 0.5, "use_lora": True, "training_args": {"warmup_steps": 0.1}}
    with pytest.raises(ConfigError, match="expects key=value"):
        apply_overrides({}, ["beta"])


@pytest.mark.parametrize(
    ("cuda", "bf16_supported", "mode"),
    [(False, None, "bf16"), (True, True, "bf16"), (True, False, "fp16")],
)
def test_auto_precision_follows_the_device(cuda, bf16_supported, mode):
    from aligntune.core.precision import resolve_precision

    resolved = resolve_precision("auto", cuda=cuda, bf16_supported=bf16_supported)
    assert resolved.mode == mode and resolved.reason.startswith("auto: ")
    assert resolve_precision("fp32", cuda=cuda, bf16_supported=bf16_supported).mode == "fp32"


def test_auto_precision_on_this_machine_is_what_the_trainer_runs():
    torch = pytest.importorskip("torch")
    pytest.importorskip("aligntune_backend_trl", reason="the TRL backend builds the trainer arguments")
    from aligntune_backend_trl.build import make_dpo_config

    from aligntune.core.precision import resolve_precision

    args = make_dpo_config(TrainConfig(model_name="m", dataset_name="d", output_dir="/tmp/x"),
                           precompute_ref_log_probs=False)
    expected = resolve_precision("auto").mode
    assert (args.bf16, args.fp16) == (expected == "bf16", expected == "fp16")
    if not torch.cuda.is_available():
        assert args.bf16 and args.use_cpu  # TRL's CPU bf16 autocast, as documented
