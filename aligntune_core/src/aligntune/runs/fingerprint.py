"""The configuration fingerprint of a run: every setting that changes the trained weights, and the training data.

Two runs with the same fingerprint and seed train the same model; a checkpoint is only resumed by a run with its
fingerprint (or when forced).
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from aligntune.core.model_paths import resolved_path

if TYPE_CHECKING:
    from aligntune.core.config import TrainConfig

# Settings that change where and how a run reports, not what it trains.
NOT_RESULT_SETTINGS = frozenset({
    "output_dir", "resume_from_checkpoint", "force_resume", "overwrite_output_dir", "on_nonfinite",
    "max_nonfinite_steps", "save_on_interrupt", "logging_steps", "save_steps", "report_to", "ref_logps_cache",
    "ref_logps_cache_dir", "eval_split", "eval_dataset_name", "strict_data",
    "logps_chunk_size",  # the same log-probs to float tolerance, computed in less memory
    # How processes are started and sharded: the same result to float tolerance. The number of processes does
    # change what trains (the global batch is batch_size x processes); it enters the fingerprint as `processes`.
    "distributed", "num_processes", "launcher",
    "log_format",
})
NOT_RESULT_TRAINING_ARGS = frozenset({
    "disable_tqdm", "logging_dir", "logging_strategy", "logging_first_step", "save_total_limit", "save_strategy",
    "save_only_model", "dataloader_num_workers", "dataloader_pin_memory", "dataloader_persistent_workers",
    "dataloader_prefetch_factor", "eval_strategy", "eval_steps", "per_device_eval_batch_size", "push_to_hub",
    "hub_model_id", "hub_strategy", "hub_token", "hub_private_repo", "run_name", "log_level", "log_level_replica",
    "precompute_ref_batch_size",
})


def stream_source_digest(config: TrainConfig) -> str:
    """For a streamed dataset: where it comes from (local files by path, size and modification time; a hub dataset
    by id, config and split), since its rows cannot be read ahead of training."""
    from aligntune.data.custom import local_files
    from aligntune.data.request import DatasetRequest

    request = DatasetRequest(dataset_name=config.dataset_name, split=config.split, data_files=config.data_files,
                             dataset_config=config.dataset_config)
    paths = local_files(request)
    if paths is None:
        source: Any = {"hub": config.dataset_name, "config": config.dataset_config, "split": config.split}
    else:
        source = {"files": [[str(path.resolve()), path.stat().st_size, path.stat().st_mtime_ns] for path in paths],
                  "split": config.split}
    return "stream:" + hashlib.blake2b(json.dumps(source).encode(), digest_size=16).hexdigest()


def run_fingerprint(config: TrainConfig, *, train_data: str, processes: int = 1) -> dict[str, Any]:
    """`{"digest": ..., "values": {setting: value}}`; `train_data` is a digest of the tokenized training pairs,
    `processes` the number of training processes (each takes `batch_size` pairs per step)."""
    values = {key: value for key, value in config.to_dict().items() if key not in NOT_RESULT_SETTINGS}
    if processes != 1:  # (absent for one process, so single-process fingerprints stay what they were)
        values["processes"] = processes
    for key, default in (("ld_alpha", None), ("use_weighting", False)):  # newer options: absent at their default,
        if values.get(key) == default:  # so the fingerprints of runs from before them stay what they were
            values.pop(key, None)
    values["training_args"] = {key: value for key, value in sorted(values["training_args"].items())
                               if key not in NOT_RESULT_TRAINING_ARGS}
    values["model_name"] = resolved_path(config.model_name)
    values["train_data"] = train_data
    values = json.loads(json.dumps(values, sort_keys=True, default=str))  # the form it has once read back from JSON
    digest = hashlib.blake2b(json.dumps(values, sort_keys=True).encode(), digest_size=16).hexdigest()
    return {"digest": digest, "values": values}
