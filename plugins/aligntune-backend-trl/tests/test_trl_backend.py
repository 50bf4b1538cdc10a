"""The TRL backend on a real tiny Llama: parity with plain TRL, LoRA, reference-free, outputs, bad inputs."""

from __future__ import annotations

import gc
import json
import math

import datasets
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from aligntune.core.backend_factory import create_rl_trainer
from aligntune.errors import ConfigError, UnknownPluginError
from conftest import ARITHMETIC

FAST = dict(logging_steps=1, learning_rate=1e-3, save_steps=None, seed=3)


def _losses(history):
    return [entry["loss"] for entry in history if "loss" in entry]


# Every loss TRL 1.16 implements, with the label smoothing those that read it are tested at.
TRL_LOSSES = {
    "sigmoid": 0.0, "hinge": 0.0, "ipo": 0.0, "exo_pair": 0.1, "nca_pair": 0.0, "robust": 0.1, "bco_pair": 0.0,
    "sppo_hard": 0.0, "aot": 0.1, "aot_unpaired": 0.1, "apo_zero": 0.0, "apo_down": 0.0, "discopop": 0.0,
    "sigmoid_norm": 0.0, "sft": 0.0,
}
CASES = [(name, "fp32", 1e-5) for name in TRL_LOSSES] + [("sigmoid", "auto", 1e-3), ("ipo", "auto", 1e-3)]


def _plain_trl(tiny_model, tmp_path, precision, loss_type, label_smoothing=0.0, loss_weights=None, steps=3,
               tokenizer_path=None):
    from trl import DPOConfig, DPOTrainer

    args = dict(output_dir=str(tmp_path / "plain"), per_device_train_batch_size=4, max_steps=steps, logging_steps=1,
                learning_rate=1e-3, save_strategy="no", seed=3, use_cpu=True, report_to="none", max_length=512,
                beta=0.1, loss_type=loss_type, label_smoothing=label_smoothing, loss_weights=loss_weights)
    if precision == "fp32":
        args["bf16"] = False
    plain = DPOTrainer(model=str(tiny_model), args=DPOConfig(**args),
                       train_dataset=datasets.Dataset.from_list(ARITHMETIC),
                       processing_class=AutoTokenizer.from_pretrained(tokenizer_path or tiny_model))
    try:
        plain.train()
    except RuntimeError as exc:
        if "active drivers" not in str(exc):
            raise
        # TRL 1.15 runs its fused LM head through a Triton kernel whenever triton is installed (unsloth installs it),
        # and Triton needs a GPU: plain TRL cannot train on this CPU-only machine. aligntune does not use that head.
        pytest.skip(f"plain TRL cannot train on CPU here (Triton kernel without a GPU): {exc}")
    return plain


def _assert_same_training(ours, plain, tolerance):
    ours_losses, plain_losses = _losses(ours.log_history), _losses(plain.state.log_history)
    assert len(ours_losses) == len(plain_losses) == ours.state.global_step
    assert ours_losses == pytest.approx(plain_losses, rel=tolerance, abs=tolerance)
    # A loss that never reads the reference (sft) trains without one here, so its rewards are β·log π.
    keys = ("rewards/margins", "logps/chosen", "logps/rejected", "entropy") if not ours.reference_free else \
        ("logps/chosen", "entropy")
    for key in keys:
        ours_values = [e[key] for e in ours.log_history if key in e]
        plain_values = [e[key] for e in plain.state.log_history if key in e]
        assert ours_values == pytest.approx(plain_values, rel=tolerance * 10, abs=tolerance * 100), key
    # Equal gradients at every step leave equal weights after the updates.
    plain_params = dict(plain.model.named_parameters())
    worst = max((p.detach() - plain_params[n].detach()).abs().max().item() for n, p in ours.model.named_parameters())
    assert worst <= tolerance * 10


@pytest.mark.parametrize(("loss_type", "precision", "tolerance"), CASES)
def test_plain_trl_and_aligntune_train_alike_for_every_trl_loss(tiny_model, pairs_jsonl, tmp_path, loss_type,
                                                                 precision, tolerance):
    smoothing = TRL_LOSSES[loss_type]
    ours = create_rl_trainer(model_name=str(tiny_model), dataset_name=str(pairs_jsonl), output_dir=str(tmp_path / "a"),
                             batch_size=4, max_steps=3, precision=precision, loss_type=loss_type,
                             label_smoothing=smoothing, **FAST)
    ours.train()
    plain = _plain_trl(tiny_model, tmp_path, precision, [loss_type], smoothing)
    _assert_same_training(ours, plain, tolerance)
    assert len({round(v, 6) for v in _losses(ours.log_history)}) > 1  # the model moved


def test_weighted_sigmoid_plus_sft_matches_trl_rpo(tiny_model, pairs_jsonl, tmp_path):
    ours = create_rl_trainer(model_name=str(tiny_model), dataset_name=str(pairs_jsonl), output_dir=str(tmp_path / "a"),
                             batch_size=4, max_steps=3, precision="fp32", loss_type=["sigmoid", "sft"],
                             loss_weights=[1.0, 0.5], **FAST)
    ours.train()
    assert {"loss/sigmoid", "loss/sft"} <= set(ours.log_history[0])
    first = ours.log_history[0]
    assert first["loss"] == pytest.approx(first["loss/sigmoid"] + 0.5 * first["loss/sft"], rel=1e-6)
    plain = _plain_trl(tiny_model, tmp_path, "fp32", ["sigmoid", "sft"], loss_weights=[1.0, 0.5])
    _assert_same_training(ours, plain, 1e-5)


def _independent_sequence_logps(model, tokenizer, prompt: str, completion: str) -> float:
    """log p(completion + EOS | prompt) with plain transformers, tokenized the way TRL does for standard data."""
    prompt_ids = tokenizer(prompt)["input_ids"]
    full_ids = tokenizer(prompt + completion + tokenizer.eos_token)["input_ids"]
    start = 0
    while start < min(len(prompt_ids), len(full_ids)) and prompt_ids[start] == full_ids[start]:
        start += 1
    with torch.no_grad():
        logits = model(torch.tensor([full_ids])).logits[0].double()
    logprobs = torch.log_softmax(logits, dim=-1)
    return sum(logprobs[t - 1, full_ids[t]].item() for t in range(start, len(full_ids)))


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_reference_free_loss_matches_an_independent_computation_and_runs_no_reference(
    tiny_model, pairs_jsonl, tmp_path, label_smoothing
):
    beta = 0.5
    trainer = create_rl_trainer(model_name=str(tiny_model), dataset_name=str(pairs_jsonl), output_dir=str(tmp_path),
                                batch_size=len(ARITHMETIC), max_steps=2, beta=beta, reference_free=True,
                                label_smoothing=label_smoothing, precision="fp32", **FAST)
    assert trainer.ref_model is None
    no_grad_forwards = []
    hook = trainer.model.register_forward_pre_hook(
        lambda module, args: no_grad_forwards.append(1) if not torch.is_grad_enabled() else None
    )
    trainer.train()
    hook.remove()
    assert trainer.reference_forward_calls == 0
    assert no_grad_forwards == []  # every forward during training was the policy's, with gradients

    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    expected = []
    for row in ARITHMETIC:
        delta = _independent_sequence_logps(base, tokenizer, row["prompt"], row["chosen"]) - _independent_sequence_logps(
            base, tokenizer, row["prompt"], row["rejected"]
        )
        x = beta * delta
        log_sig = lambda v: -math.log1p(math.exp(-v)) if v >= 0 else v - math.log1p(math.exp(v))  # noqa: E731
        expected.append(-(1 - label_smoothing) * log_sig(x) - label_smoothing * log_sig(-x))
    first_step_loss = _losses(trainer.log_history)[0]
    assert first_step_loss == pytest.approx(sum(expected) / len(expected), abs=1e-5)
    # Reference-free rewards are β·log π (no reference term), so they are far from zero at step 1.
    first = trainer.log_history[0]
    assert first["rewards/chosen"] == pytest.approx(beta * first["logps/chosen"], rel=1e-5)


def _count_causal_lms() -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if type(obj).__name__ == "LlamaForCausalLM")


def test_lora_uses_the_adapter_disabled_base_as_reference_without_a_second_model(tiny_model, pairs_jsonl, tmp_path):
    before = _count_causal_lms()
    trainer = create_rl_trainer(model_name=str(tiny_model), dataset_name=str(pairs_jsonl), output_dir=str(tmp_path),
                                batch_size=8, max_steps=4, use_lora=True, lora_r=4, lora_alpha=8,
                                lora_target_modules=["q_proj", "v_proj"], precision="fp32",
                                precompute_ref_log_probs=False, **{**FAST, "learning_rate": 5e-2})
    assert trainer.ref_model is None
    assert _count_causal_lms() - before == 1
    trainer.train()
    assert _count_causal_lms() - before == 1
    assert trainer.reference_forward_calls == 4

    # After training the adapter changed the policy, but the reference is still exactly the base model.
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    reference = trainer.reference_logps(batch).logps
    from aligntune.modeling import preference_logps

    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    with torch.no_grad():
        expected = preference_logps(base, batch).logps
        policy = preference_logps(trainer.model, batch)
    assert reference.tolist() == pytest.approx(expected.tolist(), abs=1e-5)
    assert policy.logps.tolist() != pytest.approx(expected.tolist(), abs=1e-3)

    assert (tmp_path / "adapter_config.json").is_file()
    adapter = json.loads((tmp_path / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and adapter["lora_alpha"] == 8
    assert set(adapter["target_modules"]) == {"q_proj", "v_proj"}
    record = json.loads((tmp_path / "aligntune_run.json").read_text())
    assert record["use_lora"] is True and record["base_model"] == str(tiny_model)


def test_outputs_metrics_and_evaluation(tiny_model, pairs_jsonl, tmp_path):
    out = tmp_path / "run"
    trainer = create_rl_trainer(model_name=str(tiny_model), dataset_name=str(pairs_jsonl), output_dir=str(out),
                                batch_size=16, num_epochs=2, beta=0.2, eval_split="train", max_samples=32, **FAST)
    result = trainer.train()
    # max_steps=None runs every epoch: 32 pairs / 16 per step * 2 epochs.
    assert trainer.state.global_step == 4
    assert result.metrics["train_loss"] > 0
    logged = trainer.log_history[0]
    for key in ("loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
                "logps/chosen", "logps/rejected"):
        assert key in logged
    assert any("eval_loss" in entry and "eval_rewards/margins" in entry for entry in trainer.log_history)
    metrics = trainer.evaluate()
    assert "eval_rewards/accuracies" in metrics

    for name in ("config.json", "model.safetensors", "tokenizer.json", "aligntune_run.json"):
        assert (out / name).is_file(), name
    record = json.loads((out / "aligntune_run.json").read_text())
    assert record["beta"] == 0.2 and record["loss_type"] == "sigmoid"
    assert record["model_name"] == record["reference_model"] == str(tiny_model)
    assert record["dataset"]["name"] == str(pairs_jsonl)
    assert record["versions"]["trl"] and record["versions"]["torch"]
    assert record["global_step"] == 4

    saved = tmp_path / "copy"
    trainer.save_model(str(saved))
    assert (saved / "aligntune_run.json").is_file() and (saved / "model.safetensors").is_file()


def test_precomputed_reference_gives_the_same_losses_without_a_reference_model(tiny_model, pairs_jsonl, tmp_path):
    runs = {}
    for precompute in (False, True):
        trainer = create_rl_trainer(model_name=str(tiny_model), dataset_name=str(pairs_jsonl),
                                    output_dir=str(tmp_path / str(precompute)), batch_size=8, max_steps=4,
                                    precision="fp32", precompute_ref_log_probs=precompute, ref_logps_cache=False,
                                    **FAST)
        assert (trainer.ref_model is None) == precompute
        trainer.train()
        runs[precompute] = _losses(trainer.log_history)
        if precompute:
            assert trainer.reference_forward_calls == len(ARITHMETIC) // 8  # once per batch, before training
    assert runs[True] == pytest.approx(runs[False], abs=1e-5)


def test_max_prompt_length_keeps_the_end_of_the_prompt(tiny_model, pairs_jsonl, tmp_path):
    trainer = create_rl_trainer(model_name=str(tiny_model), dataset_name=str(pairs_jsonl), output_dir=str(tmp_path),
                                max_prompt_length=3, max_steps=1, **FAST)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    row = trainer.train_dataset[0]
    assert len(row["prompt_ids"]) == 3
    full_prompt_ids = tokenizer(ARITHMETIC[0]["prompt"])["input_ids"]
    assert row["prompt_ids"] == full_prompt_ids[-3:]


def test_bad_inputs_are_clear_errors(tiny_model, pairs_jsonl, tmp_path, monkeypatch):
    from aligntune import plugins

    base = dict(model_name=str(tiny_model), dataset_name=str(pairs_jsonl), output_dir=str(tmp_path))
    monkeypatch.setenv("ALIGNTUNE_DISABLE_PLUGINS", "aligntune-backend-unsloth")  # as if it were not installed
    plugins.reset_registry()
    with pytest.raises(UnknownPluginError, match=r"unknown backend 'unsloth'.*pip install ./plugins/aligntune-backend-unsloth"):
        create_rl_trainer(**base, backend="unsloth")
    monkeypatch.delenv("ALIGNTUNE_DISABLE_PLUGINS")
    plugins.reset_registry()
    with pytest.raises(UnknownPluginError, match=r"unknown loss 'sigmiod'.*Did you mean 'sigmoid'"):
        create_rl_trainer(**base, loss_type="sigmiod")
    with pytest.raises(ConfigError, match=r"algorithm 'ppo': aligntune trains the DPO family only"):
        create_rl_trainer(**base, algorithm="ppo")
    with pytest.raises(TypeError, match=r"unknown option\. Did you mean 'batch_size'"):
        create_rl_trainer(**base, batchsize=2)
    with pytest.raises(ConfigError, match=r"training_args.warmup_ratoi: not a TRL DPOConfig field\. Did you mean"):
        create_rl_trainer(**base, training_args={"warmup_ratoi": 0.1})
    with pytest.raises(ConfigError, match=r"training_args.beta: set it with the aligntune option 'beta'"):
        create_rl_trainer(**base, training_args={"beta": 0.3})
    with pytest.raises(ConfigError, match=r"model_name='.*no-such-model': no such directory"):
        create_rl_trainer(**{**base, "model_name": str(tmp_path / "no-such-model")})


@pytest.fixture(scope="module")
def tiny_moe(tiny_model, tmp_path_factory):
    """A 2-layer Mixtral (4 experts, 2 per token, router loss weight 0.02) with the tiny tokenizer."""
    from transformers import MixtralConfig, MixtralForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    config = MixtralConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2,
                           router_aux_loss_coef=0.02, max_position_embeddings=512,
                           pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                           bos_token_id=tokenizer.bos_token_id)
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("tiny-mixtral")
    MixtralForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_a_mixture_of_experts_model_trains_with_its_router_loss_as_in_trl(tiny_moe, pairs_jsonl, tmp_path):
    ours = create_rl_trainer(model_name=str(tiny_moe), dataset_name=str(pairs_jsonl), output_dir=str(tmp_path / "a"),
                             batch_size=4, max_steps=3, precision="fp32", **FAST)
    assert ours.aux_loss_enabled and ours.router_aux_loss_coef == 0.02
    assert not ours.layout.prefix_sharing and "mixture-of-experts" in ours.layout.reason
    ours.train()
    plain = _plain_trl(tiny_moe, tmp_path, "fp32", ["sigmoid"], tokenizer_path=tiny_moe)
    _assert_same_training(ours, plain, 1e-5)
    aux = [e["aux_loss"] for e in ours.log_history if "aux_loss" in e]
    assert len(aux) == 3 and aux == pytest.approx([e["aux_loss"] for e in plain.state.log_history if "aux_loss" in e],
                                                  rel=1e-5)
    with pytest.raises(ConfigError, match="mixture-of-experts model whose router load-balancing loss"):
        create_rl_trainer(model_name=str(tiny_moe), dataset_name=str(pairs_jsonl), output_dir=str(tmp_path / "b"),
                          prefix_sharing=True, **FAST)


def test_router_aux_loss_coef_weights_the_router_loss_in_aligntunes_loss(tiny_moe, pairs_jsonl, tmp_path):
    ours = create_rl_trainer(model_name=str(tiny_moe), dataset_name=str(pairs_jsonl), output_dir=str(tmp_path / "a"),
                             batch_size=4, max_steps=1, precision="fp32", training_args={"router_aux_loss_coef": 0.5},
                             **FAST)
    assert ours.router_aux_loss_coef == 0.5
    ours.train()
    first = ours.log_history[0]  # policy = reference at step 1: sigmoid is ln 2, plus 0.5 x the router loss
    assert first["loss"] == pytest.approx(math.log(2) + 0.5 * first["aux_loss"], rel=1e-6)
    off = create_rl_trainer(model_name=str(tiny_moe), dataset_name=str(pairs_jsonl), output_dir=str(tmp_path / "b"),
                            batch_size=4, max_steps=1, precision="fp32", training_args={"router_aux_loss_coef": 0.0},
                            **FAST)
    assert not off.aux_loss_enabled and off.layout.prefix_sharing  # no router loss: the shared layout is back
