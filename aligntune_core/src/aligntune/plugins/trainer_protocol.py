"""What a backend's `create_trainer(config)` returns: the trainer surface the rest of aligntune and its users rely on.

    from aligntune.plugins import BackendTrainer
    trainer = create_rl_trainer(...)
    assert isinstance(trainer, BackendTrainer)

Only these members are promised for every backend; a backend may offer more (the TRL backend's trainer is a full
`transformers.Trainer`). `create_trainer_from_config` refuses a trainer that lacks any of them with a
`BackendContractError` naming the backend's distribution and the missing members. The behaviour behind them (resume,
checkpoints, the non-finite guard, the run record) is checked by `aligntune.testing.check_backend_contract`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class TrainOutcome(Protocol):
    """What `train()` returns: at least the last optimizer step and the run's summary metrics (`train_loss`,
    `whole_run/loss`, ...: TRL's names)."""

    global_step: int
    metrics: Mapping[str, Any]


@runtime_checkable
class BackendTrainer(Protocol):
    """The trainer a backend builds from a resolved `TrainConfig`.

    - `train(resume_from_checkpoint=None)` trains to the end and leaves the model (or LoRA adapter), the tokenizer
      and `aligntune_run.json` in `output_dir`. `resume_from_checkpoint`: `True`/`"latest"` (the newest complete
      checkpoint), `"auto"` (that, or a fresh start), or a checkpoint path; `None` takes the config's setting.
    - `evaluate()` scores the evaluation split and returns metrics named `eval_<metric>`.
    - `save_model(path)` writes the model, tokenizer and run record into `path` (default: `output_dir`) and returns
      that directory.
    - `log_history` is every logged entry so far (dicts with `step`, `loss`, `rewards/margins`, ...).
    - `config` is the run's resolved configuration (read-only; `config.beta`, `config.output_dir`, ...).
    """

    @property
    def config(self) -> Any: ...

    @property
    def log_history(self) -> list[dict[str, Any]]: ...

    def train(self, resume_from_checkpoint: bool | str | None = None) -> TrainOutcome: ...

    def evaluate(self) -> Mapping[str, float]: ...

    def save_model(self, output_dir: str | None = None) -> str: ...


METHODS = ("train", "evaluate", "save_model")
ATTRIBUTES = ("log_history", "config")


def missing_members(trainer: object) -> list[str]:
    """The `BackendTrainer` members `trainer` lacks, in the protocol's order (a method that is not callable counts as
    missing, and says so)."""
    missing = [name for name in METHODS if not callable(getattr(trainer, name, None))]
    missing = [f"{name} (not callable)" if hasattr(trainer, name) else name for name in missing]
    return missing + [name for name in ATTRIBUTES if not hasattr(trainer, name)]
