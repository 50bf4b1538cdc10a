"""The layout a run picks, per device, and why: explicit settings win; the defaults are the measured ones."""

from __future__ import annotations

import pytest

from aligntune.core.config import TrainConfig
from aligntune.errors import ConfigError
from aligntune_backend_trl.layout import choose_layout, read_model_config, supports_flex


def _config(model_name="m", **options) -> TrainConfig:
    return TrainConfig(model_name=str(model_name), dataset_name="d", **options)


def test_cpu_default_is_packed_sharing_with_the_dense_mask():
    layout = choose_layout(_config(), cuda=False)
    assert (layout.prefix_sharing, layout.packing, layout.attn_implementation) == (True, True, None)
    assert layout.description == "packed prefix-shared rows, dense 4-D mask" and "CPU default" in layout.reason


def test_gpu_default_uses_a_flex_block_mask_when_the_model_class_supports_it(tiny_model):
    assert supports_flex(read_model_config(str(tiny_model)))  # Llama
    layout = choose_layout(_config(tiny_model), cuda=True)
    assert (layout.prefix_sharing, layout.packing, layout.attn_implementation) == (True, True, "flex_attention")
    assert layout.description == "packed prefix-shared rows, flex block mask"
    # A model another backend loaded keeps its own attention: the dense mask, without packing.
    loaded = choose_layout(_config(tiny_model), cuda=True, model_loaded=True)
    assert (loaded.packing, loaded.attn_implementation) == (False, None) and "dense mask" in loaded.reason


def test_gpu_without_flex_support_shares_with_a_dense_mask_and_no_packing(tmp_path):
    assert not supports_flex(read_model_config(str(tmp_path / "no-such-model")))
    layout = choose_layout(_config(tmp_path / "no-such-model"), cuda=True)
    assert (layout.prefix_sharing, layout.packing, layout.attn_implementation) == (True, False, None)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"prefix_sharing": False}, (False, False, None)),
        ({"packing": False}, (True, False, None)),
        ({"training_args": {"model_init_kwargs": {"attn_implementation": "eager"}}}, (True, True, "eager")),
        ({"training_args": {"model_init_kwargs": {"attn_implementation": "flash_attention_2"}}},
         (False, True, "flash_attention_2")),  # whole sequences packed in one row, variable-length attention
        ({"packing": False, "training_args": {"model_init_kwargs": {"attn_implementation": "flash_attention_2"}}},
         (False, False, "flash_attention_2")),
        ({"prefix_sharing": False, "packing": True}, (False, True, None)),
    ],
)
def test_explicit_settings_win(options, expected):
    layout = choose_layout(_config(**options), cuda=False)
    assert (layout.prefix_sharing, layout.packing, layout.attn_implementation) == expected


def test_sharing_asked_for_with_an_attention_that_takes_no_mask_is_an_error():
    config = _config(prefix_sharing=True, training_args={"model_init_kwargs": {"attn_implementation": "flash_attention_2"}})
    with pytest.raises(ConfigError, match="attn_implementation='flash_attention_2' does not"):
        choose_layout(config, cuda=True)


def test_without_sharing_a_gpu_packs_whole_sequences_with_no_dense_mask(tiny_model):
    flex = choose_layout(_config(tiny_model, prefix_sharing=False), cuda=True)
    assert flex.description == "packed whole sequences, flex block mask"
    flash = choose_layout(_config(tiny_model, training_args={"model_init_kwargs": {
        "attn_implementation": "flash_attention_2"}}), cuda=True)
    assert flash.position_ids_only and flash.row_tokens_unbounded
    assert flash.description == "packed whole sequences in one row, variable-length attention from position ids"
    # On a CPU, sharing off keeps TRL's padded rows (the measured layout there).
    assert choose_layout(_config(tiny_model, prefix_sharing=False), cuda=False).description == \
        "two padded rows per pair"
