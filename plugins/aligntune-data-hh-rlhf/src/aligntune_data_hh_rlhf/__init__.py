"""aligntune plugin: the `hh-rlhf` dataset adapter for Anthropic/hh-rlhf. Light: the work is imported on use."""

from __future__ import annotations

from collections.abc import Iterator

from aligntune.plugins import DatasetAdapterSpec, hookimpl, lazy

SUBSETS = ("harmless-base", "helpful-base", "helpful-online", "helpful-rejection-sampled")


@hookimpl
def aligntune_dataset_adapters() -> Iterator[DatasetAdapterSpec]:
    yield DatasetAdapterSpec(
        name="hh-rlhf",
        summary="Anthropic hh-rlhf: lossless prompt/response split, unusable pairs counted",
        load=lazy("aligntune_data_hh_rlhf.convert:load"),
        dataset_names=("Anthropic/hh-rlhf",),
        options={"format": "standard", "data_dir": None, "on_malformed": "error"},
    )
