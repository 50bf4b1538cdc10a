"""Dataset mixtures: several preference datasets, each through its own adapter, combined into one training set.

    datasets:
      - {name: Anthropic/hh-rlhf, config: helpful-base, split: train, weight: 0.5}
      - {name: OpenAssistant/oasst1, split: train}
      - {name: my_pairs.jsonl, max_samples: 2000, column_mapping: {q: prompt, a: chosen, b: rejected}}

Per entry, `max_samples` keeps the first N usable pairs (as for a single dataset), then `weight` scales how many of
them train: 0.5 takes half of them (drawn with the run's seed), 2 takes every pair twice, 1.5 every pair once and
half of them twice. The mixture (per entry: pairs loaded, pairs used, weight, the adapter's own report) goes into
the log and the run record.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import structlog

from aligntune.data.request import PreferenceData
from aligntune.errors import DataError, did_you_mean

log = structlog.get_logger("aligntune.data")

ENTRY_KEYS = ("name", "split", "config", "data_files", "max_samples", "weight", "dataset_adapter", "dataset_options",
              "column_mapping")


def mixture_problem(value: Any) -> str | None:
    """What is wrong with a `datasets:` value (None: nothing)."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not value:
        return "must be a non-empty list of datasets, each a mapping such as {name: my_pairs.jsonl, weight: 0.5}"
    for index, entry in enumerate(value):
        where = f"entry {index}"
        if not isinstance(entry, Mapping):
            return f"{where} must be a mapping with at least name:, got {entry!r}"
        if not isinstance(entry.get("name"), str) or not entry["name"].strip():
            return f"{where} needs name: (a dataset id or a local file/directory)"
        where = f"entry {index} ({entry['name']})"
        unknown = sorted(set(entry) - set(ENTRY_KEYS))
        if unknown:
            return (f"{where} has unknown key(s) {', '.join(unknown)}.{did_you_mean(unknown[0], ENTRY_KEYS)} The keys "
                    f"are {', '.join(ENTRY_KEYS)}")
        weight = entry.get("weight")
        if weight is not None and (isinstance(weight, bool) or not isinstance(weight, (int, float))
                                   or not math.isfinite(weight) or weight <= 0):
            return f"{where}: weight must be a number > 0, got {weight!r}"
        samples = entry.get("max_samples")
        if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int) or samples < 1):
            return f"{where}: max_samples must be an integer >= 1, got {samples!r}"
        for key in ("dataset_options", "column_mapping"):
            if entry.get(key) is not None and not isinstance(entry[key], Mapping):
                return f"{where}: {key} must be a mapping"
    return None


def mixture_label(entries: list[Mapping[str, Any]]) -> str:
    return " + ".join(str(entry["name"]) for entry in entries)


def _weighted(dataset, weight: float, seed: int):
    """`weight` times the pairs of `dataset`: whole copies, then a seeded sample for the fraction."""
    import numpy as np

    whole, fraction = int(weight), weight - int(weight)
    indices = list(range(len(dataset))) * whole
    extra = round(fraction * len(dataset))
    if extra:
        indices += sorted(np.random.default_rng(seed).choice(len(dataset), size=extra, replace=False).tolist())
    return dataset.select(indices)


def load_mixture(entries: list[Mapping[str, Any]], *, seed: int, load: Any) -> PreferenceData:
    """Load each entry with `load(name, **options)` (the single-dataset loader with the run's shared options), apply
    its weight, and concatenate. Every pair keeps only `prompt`, `chosen`, `rejected`."""
    import datasets

    parts, summary = [], []
    for index, entry in enumerate(entries):
        data = load(entry["name"], split=entry.get("split", "train"), data_files=entry.get("data_files"),
                    dataset_config=entry.get("config"), max_samples=entry.get("max_samples"),
                    dataset_adapter=entry.get("dataset_adapter"), column_mapping=entry.get("column_mapping"),
                    **dict(entry.get("dataset_options") or {}))
        dataset = data.dataset.select_columns(["prompt", "chosen", "rejected"])
        loaded = len(dataset)
        if loaded == 0:
            raise DataError(f"datasets entry {index} ({entry['name']}): no usable pairs (see the adapter's report in "
                            "the log); remove the entry or fix its data")
        if entry.get("weight") is not None:
            dataset = _weighted(dataset, float(entry["weight"]), seed + index)
            if len(dataset) == 0:  # never an entry that silently contributes nothing
                raise DataError(f"datasets entry {index} ({entry['name']}): weight {entry['weight']} of its {loaded} "
                                "pairs gives none; raise the weight or remove the entry")
        parts.append(dataset)
        summary.append({"name": entry["name"], "split": entry.get("split", "train"), "config": entry.get("config"),
                        "max_samples": entry.get("max_samples"), "weight": entry.get("weight"),
                        "pairs_loaded": loaded, "pairs_used": len(dataset), "report": data.report})
        log.info("mixture entry loaded", dataset=entry["name"], pairs_loaded=loaded, pairs_used=len(dataset),
                 weight=entry.get("weight"))
    kinds = {"conversational" if isinstance(part[0]["prompt"], list) else "plain text" for part in parts}
    if len(kinds) > 1:
        which = ", ".join(f"{s['name']}: {'conversational' if isinstance(p[0]['prompt'], list) else 'plain text'}"
                          for s, p in zip(summary, parts, strict=True))
        raise DataError(f"datasets: the mixture mixes plain-text and conversational pairs ({which}); they cannot be "
                        "trained together. Set system_prompt (it makes plain rows conversational) or use datasets of "
                        "one kind.")
    try:
        combined = datasets.concatenate_datasets(parts)
    except ValueError as exc:  # e.g. message dicts with different keys
        raise DataError(f"datasets: the entries' pairs cannot be combined ({exc}); give datasets whose messages have "
                        "the same fields") from None
    total = len(combined)
    for entry in summary:
        entry["share"] = round(entry["pairs_used"] / total, 4)
    report = {"mixture": summary, "kept": total}
    log.info("dataset mixture", pairs=total, shares=[f"{entry['name']}: {entry['share']:.1%}" for entry in summary])
    return PreferenceData(dataset=combined, report=report)
