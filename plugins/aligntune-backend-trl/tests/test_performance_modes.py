"""Prefix sharing, packing and the on-disk reference cache change the work, never the results."""

from __future__ import annotations

import pytest

from aligntune.core.backend_factory import create_rl_trainer
from aligntune.errors import ConfigError

FAST = dict(batch_size=8, max_steps=4, logging_steps=1, learning_rate=1e-3, save_steps=None, precision="fp32", seed=3)


def _losses(trainer):
    return [entry["loss"] for entry in trainer.log_history if "loss" in entry]


def _train(model, data, out, **options):
    trainer = create_rl_trainer(model_name=str(model), dataset_name=str(data), output_dir=str(out), **FAST, **options)
    trainer.train()
    return trainer


def test_layouts_train_identically(tiny_model, pairs_jsonl, tmp_path):
    runs = {
        "two rows": _train(tiny_model, pairs_jsonl, tmp_path / "a", prefix_sharing=False),
        "shared": _train(tiny_model, pairs_jsonl, tmp_path / "b", prefix_sharing=True, packing=False),
        "packed": _train(tiny_model, pairs_jsonl, tmp_path / "c", packing=True),
        "packed sequences": _train(tiny_model, pairs_jsonl, tmp_path / "d", prefix_sharing=False, packing=True),
    }
    assert runs["packed sequences"].layout.description == "packed whole sequences, dense 4-D mask"
    reference = _losses(runs["two rows"])
    for name, trainer in runs.items():
        assert _losses(trainer) == pytest.approx(reference, abs=1e-5), name
    # Fewer tokens go through the model when the prompt is shared.
    tokens = {name: trainer.log_history[-2]["num_tokens"] for name, trainer in runs.items()}
    assert tokens["shared"] == tokens["packed"] < tokens["packed sequences"] == tokens["two rows"]


def test_reference_cache_hit_miss_and_invalidation(tiny_model, tiny_policy, pairs_jsonl, tmp_path):
    cache = tmp_path / "cache"
    options = dict(precompute_ref_log_probs=True, ref_logps_cache_dir=str(cache))
    first = _train(tiny_model, pairs_jsonl, tmp_path / "1", **options)
    assert first.ref_cache_hits == 0 and first.reference_forward_calls > 0
    assert len(list(cache.glob("*.pt"))) == 1

    second = _train(tiny_model, pairs_jsonl, tmp_path / "2", **options)
    assert second.ref_cache_hits == 1 and second.reference_forward_calls == 0  # no reference pass at all
    assert _losses(second) == _losses(first)
    assert second.train_dataset["ref_chosen_logps"] == first.train_dataset["ref_chosen_logps"]

    # Any change to the model, the data or the tokenization settings misses the cache.
    for changed in (dict(model=tiny_policy), dict(max_samples=40), dict(max_seq_length=12)):
        model = changed.pop("model", tiny_model)
        trainer = create_rl_trainer(model_name=str(model), dataset_name=str(pairs_jsonl), output_dir=str(tmp_path / "x"),
                                    **{**FAST, **options, **changed})
        assert trainer.ref_cache_hits == 0 and trainer.reference_forward_calls > 0, changed
    assert len(list(cache.glob("*.pt"))) == 4

    # Precomputed (cached or not) reference log-probs train exactly like the live reference.
    live = _train(tiny_model, pairs_jsonl, tmp_path / "3")
    assert _losses(live) == pytest.approx(_losses(first), abs=1e-5)
    uncached = _train(tiny_model, pairs_jsonl, tmp_path / "4", precompute_ref_log_probs=True, ref_logps_cache=False)
    assert uncached.ref_cache_hits == 0 and _losses(uncached) == pytest.approx(_losses(first), abs=1e-6)
    assert len(list(cache.glob("*.pt"))) == 4


def test_a_corrupt_cache_file_is_recomputed(tiny_model, pairs_jsonl, tmp_path):
    cache = tmp_path / "cache"
    options = dict(precompute_ref_log_probs=True, ref_logps_cache_dir=str(cache))
    _train(tiny_model, pairs_jsonl, tmp_path / "1", **options)
    (path,) = cache.glob("*.pt")
    path.write_bytes(b"not a tensor file")
    again = _train(tiny_model, pairs_jsonl, tmp_path / "2", **options)
    assert again.ref_cache_hits == 0 and again.reference_forward_calls > 0


def test_an_attention_that_cannot_take_the_mask_is_a_clear_error(tiny_model, pairs_jsonl, tmp_path):
    with pytest.raises(ConfigError, match="prefix_sharing needs an attention implementation that takes its mask"):
        create_rl_trainer(model_name=str(tiny_model), dataset_name=str(pairs_jsonl), output_dir=str(tmp_path),
                          prefix_sharing=True, training_args={"model_init_kwargs": {"attn_implementation":
                                                                                     "flash_attention_2"}})
