"""TRL DPOConfig options where aligntune replaced TRL's code: LD-DPO (`ld_alpha`) and WPO (`use_weighting`) train
step for step like plain TRL 1.16; every DPOConfig field is classified (`aligntune_backend_trl.trl_options`), and the
honoured ones take effect on a real tiny model."""

from __future__ import annotations

import dataclasses
import json
import math

import attrs
import datasets
import pytest
import torch
from transformers import AutoTokenizer

from aligntune.core import compat
from aligntune.core.backend_factory import create_rl_trainer
from aligntune.core.config import TrainConfig
from aligntune.errors import ConfigError
from aligntune_backend_trl.build import make_dpo_config
from aligntune_backend_trl.trl_options import DPO_FIELDS, REMOVED_FIELDS, How

FAST = dict(logging_steps=1, learning_rate=1e-3, save_steps=None, seed=3, batch_size=4, max_steps=3, precision="fp32")
TOLERANCE = 1e-5

# Chosen and rejected of different lengths (either side longer): LD-DPO changes the sums of most pairs.
LENGTHY = [
    {"prompt": f"Q: what is {a} plus {b}? A:",
     "chosen": f" {a + b}" + (" because I added them up" if (a + b) % 2 else ""),
     "rejected": f" {a + b + 1}" + ("" if (a + b) % 2 else " or so, I think, roughly")}
    for a in range(8) for b in range(8)
]


@pytest.fixture(scope="module")
def lengthy_jsonl(tmp_path_factory):
    path = tmp_path_factory.mktemp("lengthy") / "pairs.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in LENGTHY), encoding="utf-8")
    return path


def _losses(history):
    return [entry["loss"] for entry in history if "loss" in entry and "train_runtime" not in entry]


def _plain_trl(tiny_model, tmp_path, rows, **dpo_args):
    from trl import DPOConfig, DPOTrainer

    args = dict(output_dir=str(tmp_path / "plain"), per_device_train_batch_size=4, max_steps=3, logging_steps=1,
                learning_rate=1e-3, save_strategy="no", seed=3, use_cpu=True, report_to="none", bf16=False, beta=0.1)
    plain = DPOTrainer(model=str(tiny_model), args=DPOConfig(**{**args, **dpo_args}),
                       train_dataset=datasets.Dataset.from_list(rows),
                       processing_class=AutoTokenizer.from_pretrained(tiny_model))
    try:
        plain.train()
    except RuntimeError as exc:
        if "active drivers" not in str(exc):
            raise
        # TRL 1.15 (the Unsloth environment) runs its fused LM head through Triton whenever triton is installed, and
        # Triton needs a GPU: plain TRL cannot train on this CPU-only machine there (as in test_trl_backend.py).
        pytest.skip(f"plain TRL cannot train on CPU here (Triton kernel without a GPU): {exc}")
    return plain


def _assert_same_training(ours, plain):
    """Loss and metrics per step within TOLERANCE (fp32), and the weights after the last update."""
    assert _losses(ours.log_history) == pytest.approx(_losses(plain.state.log_history), rel=TOLERANCE, abs=TOLERANCE)
    for key in ("rewards/margins", "rewards/chosen", "logps/chosen", "logps/rejected"):
        ours_values = [e[key] for e in ours.log_history if key in e]
        plain_values = [e[key] for e in plain.state.log_history if key in e]
        assert ours_values == pytest.approx(plain_values, rel=TOLERANCE * 10, abs=TOLERANCE * 100), key
    plain_params = dict(plain.model.named_parameters())
    worst = max((p.detach() - plain_params[n].detach()).abs().max().item() for n, p in ours.model.named_parameters())
    assert worst <= TOLERANCE * 10


_OFF: dict[tuple, list[float]] = {}


def _losses_without_the_options(tiny_model, data, tmp_path, loss_type, loss_weights):
    """Our step losses with ld_alpha/use_weighting off (one run per loss, kept for the module)."""
    key = (str(data), tuple(loss_type), tuple(loss_weights or ()))
    if key not in _OFF:
        off = create_rl_trainer(model_name=str(tiny_model), dataset_name=str(data), output_dir=str(tmp_path / "off"),
                                loss_type=loss_type, loss_weights=loss_weights, ref_logps_cache=False, **FAST)
        off.train()
        _OFF[key] = _losses(off.log_history)
    return _OFF[key]


LD_WPO_CASES = [
    # (options, loss_type, loss_weights, aligntune layout/reference options)
    ({"ld_alpha": 0.5}, ["sigmoid"], None, {}),
    ({"ld_alpha": 0.5}, ["sigmoid"], None, {"prefix_sharing": False, "precompute_ref_log_probs": False}),
    ({"use_weighting": True}, ["sigmoid"], None, {}),
    ({"use_weighting": True}, ["sigmoid"], None, {"prefix_sharing": False}),
    ({"ld_alpha": 0.3, "use_weighting": True}, ["sigmoid", "ipo"], [1.0, 0.5], {}),
    ({"ld_alpha": 0.3, "use_weighting": True}, ["sigmoid", "ipo"], [1.0, 0.5],
     {"prefix_sharing": False, "precompute_ref_log_probs": False}),
    # sft is a likelihood: with ld_alpha TRL keeps its tokens at full weight.
    ({"ld_alpha": 0.5}, ["sigmoid", "sft"], [1.0, 0.5], {}),
]


@pytest.mark.parametrize(("options", "loss_type", "loss_weights", "layout"), LD_WPO_CASES)
def test_ld_alpha_and_use_weighting_train_like_plain_trl(tiny_model, lengthy_jsonl, tmp_path, options, loss_type,
                                                        loss_weights, layout):
    ours = create_rl_trainer(model_name=str(tiny_model), dataset_name=str(lengthy_jsonl),
                             output_dir=str(tmp_path / "a"), loss_type=loss_type, loss_weights=loss_weights,
                             ref_logps_cache=False, **options, **layout, **FAST)
    expected_layout = "two padded rows per pair" if layout.get("prefix_sharing") is False else "prefix-shared"
    assert expected_layout in ours.layout.description
    ours.train()
    plain = _plain_trl(tiny_model, tmp_path, LENGTHY, loss_type=loss_type, loss_weights=loss_weights, **options)
    _assert_same_training(ours, plain)
    # The options change what is trained (so this test can fail): the losses differ from a run without them.
    off = _losses_without_the_options(tiny_model, lengthy_jsonl, tmp_path, loss_type, loss_weights)
    assert max(abs(a - b) for a, b in zip(_losses(ours.log_history), off)) > 100 * TOLERANCE


def test_a_reference_cache_written_without_ld_alpha_is_not_read_with_it(tiny_model, lengthy_jsonl, tmp_path):
    def build(**options):
        return create_rl_trainer(model_name=str(tiny_model), dataset_name=str(lengthy_jsonl),
                                 output_dir=str(tmp_path / f"run{len(list(tmp_path.iterdir()))}"),
                                 ref_logps_cache_dir=str(tmp_path / "cache"), precompute_ref_log_probs=True,
                                 **options, **FAST)

    plain = build()
    assert plain.ref_cache_hits == 0
    desensitised = build(ld_alpha=0.5)
    assert desensitised.ref_cache_hits == 0  # another key: the plain sums are never reused
    column = desensitised.train_dataset["ref_chosen_logps"]
    assert column != plain.train_dataset["ref_chosen_logps"]
    again = build(ld_alpha=0.5)
    assert again.ref_cache_hits == 1 and again.train_dataset["ref_chosen_logps"] == column


def test_use_weighting_with_a_batch_sorting_loss_is_refused():
    with pytest.raises(ConfigError, match="use_weighting.*'aot'"):
        TrainConfig(model_name="m", dataset_name="d", loss_type=["sigmoid", "aot"], use_weighting=True)
    with pytest.raises(ConfigError, match="ld_alpha"):
        TrainConfig(model_name="m", dataset_name="d", ld_alpha=1.5)


# -- the table ---------------------------------------------------------------------------------------------------


def test_the_table_classifies_every_dpo_config_field_of_the_installed_trl():
    from transformers import TrainingArguments
    from trl import DPOConfig

    specific = {f.name for f in dataclasses.fields(DPOConfig)} - {f.name for f in dataclasses.fields(TrainingArguments)}
    assert specific - set(DPO_FIELDS) == set(), "a DPOConfig field aligntune has not classified (trl_options.py)"
    assert set(DPO_FIELDS) - specific == set(), "the table names a field this TRL does not have"
    options = set(TrainConfig.field_names()) | {"loss_params"}
    for name, handling in DPO_FIELDS.items():
        if handling.how is How.OPTION:
            assert handling.detail.split(":")[0] in options, name


def test_every_trl_name_accepted_into_training_args_is_honoured():
    """compat.TRAINING_ARGS passes names into training_args: each must be a TrainingArguments field (transformers'
    loop, not replaced) or a DPOConfig field the table says takes effect."""
    from transformers import TrainingArguments

    base = {f.name for f in dataclasses.fields(TrainingArguments)}
    for name, field in compat.TRAINING_ARGS.items():
        assert field in base or DPO_FIELDS[field].how is How.HONOURED, name
    for name in REMOVED_FIELDS:
        assert name not in compat.TRAINING_ARGS


@pytest.mark.parametrize(
    ("training_args", "message"),
    [
        ({"ld_alpha": 0.5}, "training_args.ld_alpha: set it with the aligntune option ld_alpha"),
        ({"use_weighting": True}, "aligntune option use_weighting"),
        ({"padding_free": True}, "aligntune option packing"),
        ({"discopop_tau": 0.1}, r"loss_params: \{discopop_tau"),
        ({"f_divergence_type": "js_divergence"}, "f-divergence DPO is not among aligntune's losses"),
        ({"f_alpha_divergence_coef": 0.3}, "f-divergence DPO"),
        ({"rpo_alpha": 0.5}, "since TRL 1.0 it is the sft loss"),
        ({"generate_during_eval": True}, "aligntune eval"),
    ],
)
def test_training_args_that_would_be_ignored_are_errors(training_args, message):
    config = TrainConfig(model_name="m", dataset_name="d", output_dir="out", training_args=training_args)
    with pytest.raises(ConfigError, match=message):
        make_dpo_config(config, precompute_ref_log_probs=True)


def test_activation_offloading_without_an_accelerator_is_a_clear_error():
    if torch.accelerator.current_accelerator() is not None:
        pytest.skip("this machine has an accelerator: TRL's activation offloading runs (around aligntune's loss)")
    config = TrainConfig(model_name="m", dataset_name="d", output_dir="out",
                         training_args={"activation_offloading": True})
    with pytest.raises(ConfigError, match="no accelerator"):
        make_dpo_config(config, precompute_ref_log_probs=True)


def test_a_refused_field_at_trls_default_is_accepted():
    config = TrainConfig(model_name="m", dataset_name="d", output_dir="out",
                         training_args={"f_divergence_type": "reverse_kl"})
    assert make_dpo_config(config, precompute_ref_log_probs=True).f_divergence_type == "reverse_kl"


# -- honoured fields, where aligntune's code replaced TRL's -----------------------------------------------------


def _build(tiny_model, data, tmp_path, **options):
    return create_rl_trainer(model_name=str(tiny_model), dataset_name=str(data), output_dir=str(tmp_path / "b"),
                             ref_logps_cache=False, **{**FAST, **options})


def test_pad_to_multiple_of_and_pad_token_reach_aligntunes_collator(tiny_model, pairs_jsonl, tmp_path):
    from aligntune.modeling import preference_logps

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    pad = next(token for token in ("Q", "A", ":") if token in tokenizer.get_vocab())
    trainer = _build(tiny_model, pairs_jsonl, tmp_path, training_args={"pad_to_multiple_of": 64, "pad_token": pad})
    assert trainer.layout.prefix_sharing
    batch = next(iter(trainer.get_train_dataloader()))
    width = batch["input_ids"].size(1)
    assert width % 64 == 0
    assert trainer.data_collator.pad_token_id == tokenizer.convert_tokens_to_ids(pad)
    assert batch["input_ids"][0, -1].item() == tokenizer.convert_tokens_to_ids(pad)  # the padding is that token
    unpadded = attrs.evolve(trainer.data_collator, pad_to_multiple_of=None)
    examples = [trainer.train_dataset[i] for i in range(4)]
    narrow = unpadded(examples)
    assert narrow["input_ids"].size(1) < trainer.data_collator(examples)["input_ids"].size(1)
    model = trainer.model.eval()
    with torch.no_grad():  # padding changes the shape, not the log-probs
        assert torch.allclose(preference_logps(model, trainer.data_collator(examples)).logps,
                              preference_logps(model, narrow).logps, atol=1e-5)
    with pytest.raises(ConfigError, match="pad_token='<not a token>' is not a token"):
        _build(tiny_model, pairs_jsonl, tmp_path / "x", training_args={"pad_token": "<not a token>"})


def test_precompute_ref_batch_size_sets_the_reference_passs_batches(tiny_model, pairs_jsonl, tmp_path):
    default = _build(tiny_model, pairs_jsonl, tmp_path / "d", precompute_ref_log_probs=True)
    assert default.reference_forward_calls == math.ceil(64 / 4)  # batch_size
    larger = _build(tiny_model, pairs_jsonl, tmp_path / "l", precompute_ref_log_probs=True,
                    training_args={"precompute_ref_batch_size": 16})
    assert larger.reference_forward_calls == 64 // 16
    assert larger.train_dataset["ref_chosen_logps"] == pytest.approx(default.train_dataset["ref_chosen_logps"],
                                                                    abs=1e-5)


def test_dataset_num_proc_reaches_aligntunes_tokenization(tiny_model, pairs_jsonl, tmp_path, monkeypatch):
    calls = []
    original = datasets.Dataset.map

    def spy(self, function=None, *args, **kwargs):
        calls.append((kwargs.get("desc"), kwargs.get("num_proc")))
        return original(self, function, *args, **kwargs)

    monkeypatch.setattr(datasets.Dataset, "map", spy)
    trainer = _build(tiny_model, pairs_jsonl, tmp_path, training_args={"dataset_num_proc": 2}, max_prompt_length=8)
    ours = [num_proc for desc, num_proc in calls if desc and ("Tokenizing" in desc or "Truncating" in desc)]
    assert ours and set(ours) == {2}
    assert len(trainer.train_dataset) == 64


def test_keep_end_truncation_uses_padded_rows_and_trains_like_plain_trl(tiny_model, pairs_jsonl, tmp_path):
    from conftest import ARITHMETIC

    ours = _build(tiny_model, pairs_jsonl, tmp_path, max_seq_length=11, training_args={"truncation_mode": "keep_end"})
    assert not ours.layout.prefix_sharing and not ours.layout.packing and "keep_end" in ours.layout.reason
    ours.train()
    plain = _plain_trl(tiny_model, tmp_path, ARITHMETIC, max_length=11, truncation_mode="keep_end")
    _assert_same_training(ours, plain)
    keep_start = _build(tiny_model, pairs_jsonl, tmp_path / "s", max_seq_length=11, prefix_sharing=False)
    keep_start.train()
    assert _losses(keep_start.log_history) != pytest.approx(_losses(ours.log_history), abs=1e-4)
    with pytest.raises(ConfigError, match="keep_end"):
        _build(tiny_model, pairs_jsonl, tmp_path / "x", prefix_sharing=True,
               training_args={"truncation_mode": "keep_end"})


def test_sync_ref_model_updates_the_reference_aligntune_runs(tiny_model, pairs_jsonl, tmp_path):
    from conftest import ARITHMETIC

    sync = {"sync_ref_model": True, "ref_model_sync_steps": 1, "ref_model_mixup_alpha": 0.5}
    ours = _build(tiny_model, pairs_jsonl, tmp_path, training_args=sync)
    assert ours.ref_model is not None and not ours.precompute_ref_logps
    ours.train()
    plain = _plain_trl(tiny_model, tmp_path, ARITHMETIC, **sync)
    _assert_same_training(ours, plain)
    unsynced = _build(tiny_model, pairs_jsonl, tmp_path / "u", precompute_ref_log_probs=False)
    unsynced.train()  # the reference moving changes the losses from the second step on
    assert _losses(unsynced.log_history)[2] != pytest.approx(_losses(ours.log_history)[2], abs=1e-4)
