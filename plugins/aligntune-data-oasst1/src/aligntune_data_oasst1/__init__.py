"""aligntune plugin: the `oasst` dataset adapter for OpenAssistant/oasst1 and oasst2.

Light on purpose: `datasets` and the conversion code are imported only when data is loaded.
"""

from __future__ import annotations

from collections.abc import Iterator

from aligntune.plugins import DatasetAdapterSpec, hookimpl, lazy

# The adapter's options and their defaults (documented in docs/datasets/oasst1.md).
OPTIONS = {
    "pairs": "best_vs_worst",
    "lang": "en",
    "drop_deleted": True,
    "require_review": True,
    "drop_synthetic": True,
    "holdout_fraction": 0.0,
}


@hookimpl
def aligntune_dataset_adapters() -> Iterator[DatasetAdapterSpec]:
    yield DatasetAdapterSpec(
        name="oasst",
        summary="OpenAssistant message trees: ranked sibling replies as conversational pairs, drops counted",
        load=lazy("aligntune_data_oasst1.convert:load"),
        dataset_names=("OpenAssistant/oasst1", "OpenAssistant/oasst2"),
        options=dict(OPTIONS),
    )
