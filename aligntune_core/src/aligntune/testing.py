"""Helpers for plugin authors' tests (and ours): contract checks that any loss or backend plugin must pass, and the
fixtures they need.

    from aligntune.testing import check_backend_contract, check_loss_contract, tiny_backend_inputs
    def test_my_loss():
        check_loss_contract("my-loss", params={"margin": 1.0})
    def test_my_backend(tmp_path):
        model_dir, data_file = tiny_backend_inputs(tmp_path / "inputs")
        check_backend_contract("my-backend", model_dir=model_dir, data_file=data_file, workdir=tmp_path / "work")
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aligntune.backend_contract import CheckResult


def _cases(torch):
    generator = torch.Generator().manual_seed(0)

    def rand(n, scale):
        return -scale * torch.rand(n, generator=generator, dtype=torch.float64)

    ordinary = dict(policy_chosen=rand(7, 40.0), policy_rejected=rand(7, 40.0), ref_chosen=rand(7, 40.0),
                    ref_rejected=rand(7, 40.0), chosen_lengths=torch.randint(1, 30, (7,), generator=generator),
                    rejected_lengths=torch.randint(1, 30, (7,), generator=generator))
    single = {key: value[:1] for key, value in ordinary.items()}
    huge = dict(policy_chosen=torch.tensor([-1.0, -1e4, -5.0], dtype=torch.float64),
                policy_rejected=torch.tensor([-1e4, -1.0, -5.0], dtype=torch.float64),
                ref_chosen=torch.tensor([-1e4, -1.0, -5.0], dtype=torch.float64),
                ref_rejected=torch.tensor([-1.0, -1e4, -5.0], dtype=torch.float64),
                chosen_lengths=torch.tensor([0, 3, 1]), rejected_lengths=torch.tensor([5, 0, 1]))
    return {"ordinary": ordinary, "single pair": single, "huge margins, zero lengths": huge}


def check_loss_contract(
    name: str | list[str],
    *,
    params: dict[str, Any] | None = None,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
    weights: list[float] | None = None,
) -> None:
    """Assert the loss contract for the loss `name` (as installed): for ordinary inputs, a single pair, and huge
    margins with zero lengths, with and without a reference, it returns one finite value per pair, its gradient
    reaches the policy log-probs and is finite, the rewards are β·(policy − reference), and it is deterministic.

    Raises AssertionError saying which case and property failed.
    """
    import torch

    from aligntune.losses import compute_loss

    for case, values in _cases(torch).items():
        for reference in (True, False):
            where = f"loss {name!r}, {case}, {'with' if reference else 'without'} a reference"
            chosen = values["policy_chosen"].clone().requires_grad_(True)
            rejected = values["policy_rejected"].clone().requires_grad_(True)
            kwargs = dict(
                policy_chosen_logps=chosen,
                policy_rejected_logps=rejected,
                ref_chosen_logps=values["ref_chosen"] if reference else None,
                ref_rejected_logps=values["ref_rejected"] if reference else None,
                beta=beta,
                label_smoothing=label_smoothing,
                chosen_lengths=values["chosen_lengths"],
                rejected_lengths=values["rejected_lengths"],
                weights=weights,
                **(params or {}),
            )
            out = compute_loss(name, **kwargs)
            n = chosen.shape[0]
            assert out.losses.shape == (n,), f"{where}: losses have shape {tuple(out.losses.shape)}, expected ({n},)"
            assert torch.isfinite(out.losses).all(), f"{where}: non-finite losses {out.losses.tolist()}"
            expected_chosen = beta * (chosen.detach() - (values["ref_chosen"] if reference else 0.0))
            assert torch.allclose(out.chosen_rewards, expected_chosen), f"{where}: chosen_rewards are not β·(π − ref)"
            assert out.chosen_rewards.shape == out.rejected_rewards.shape == (n,), f"{where}: reward shapes"
            out.losses.mean().backward()
            grads = [g for g in (chosen.grad, rejected.grad) if g is not None]
            assert grads, f"{where}: no gradient reaches the policy log-probs"
            assert all(torch.isfinite(g).all() for g in grads), f"{where}: non-finite gradients"
            again = compute_loss(name, **{**kwargs, "policy_chosen_logps": chosen.detach(),
                                          "policy_rejected_logps": rejected.detach()})
            assert torch.equal(again.losses, out.losses.detach()), f"{where}: not deterministic"
        if case == "ordinary":
            probe = values["policy_chosen"].clone().requires_grad_(True)
            out = compute_loss(name, policy_chosen_logps=probe, policy_rejected_logps=values["policy_rejected"],
                               ref_chosen_logps=values["ref_chosen"], ref_rejected_logps=values["ref_rejected"],
                               beta=beta, label_smoothing=label_smoothing, chosen_lengths=values["chosen_lengths"],
                               rejected_lengths=values["rejected_lengths"], weights=weights, **(params or {}))
            out.losses.mean().backward()
            assert probe.grad.abs().sum() > 0, f"loss {name!r}: the chosen log-probs get no gradient"


# -- backends ----------------------------------------------------------------------------------------------------------

# 64 arithmetic pairs: what the contract kit trains on (8 steps of 8 pairs are one epoch).
TINY_PAIRS = [
    {"prompt": f"Q: what is {a} plus {b}? A:", "chosen": f" {a + b}", "rejected": f" {a + b + 1 + (a * b) % 3}"}
    for a in range(8)
    for b in range(8)
]


def tiny_backend_inputs(directory: str | Path) -> tuple[Path, Path]:
    """Build, offline, what `check_backend_contract` trains: a 2-layer, hidden-64 Llama with a BPE tokenizer trained
    on the data (`aligntune.demo.tiny_model`), and 64 preference pairs as JSON Lines. Returns `(model_dir,
    data_file)`, both under `directory`."""
    from aligntune.demo.tiny_model import build_tiny_llama

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    data_file = directory / "pairs.jsonl"
    data_file.write_text("".join(json.dumps(row) + "\n" for row in TINY_PAIRS), encoding="utf-8")
    corpus = [row["prompt"] + row["chosen"] + row["rejected"] for row in TINY_PAIRS]
    model_dir = build_tiny_llama(directory / "tiny-llama", corpus, vocab_size=400, seed=0)
    return Path(model_dir), data_file


def write_fake_distribution(root: str | Path, dist: str, version: str, entry_points: dict[str, str],
                            modules: dict[str, str]) -> Path:
    """Make `root` look like site-packages holding one installed distribution `dist` whose `aligntune` entry points
    are `entry_points` (name -> module) and whose modules are `modules` (name -> source); nothing is pip-installed.
    Put `root` on `sys.path` (or PYTHONPATH for a subprocess) and call `aligntune.plugins.reset_registry()`: plugin
    discovery then finds it like any installed plugin. Returns its `.dist-info` folder."""
    root = Path(root)
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8")
    lines = "\n".join(f"{name} = {target}" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[aligntune]\n{lines}\n", encoding="utf-8")
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    return info


def check_backend_contract(
    backend_name: str,
    *,
    model_dir: str | Path,
    data_file: str | Path,
    workdir: str | Path,
    options: Mapping[str, Any] | None = None,
    checks: Sequence[str] | None = None,
) -> list[CheckResult]:
    """Assert the run lifecycle guarantees every backend must give, for the installed backend `backend_name`, on a
    tiny model (`model_dir`) and a JSON Lines file of preference pairs (`data_file`; `tiny_backend_inputs` makes
    both). Everything runs through `create_rl_trainer(backend=...)` and the `aligntune` CLI, in `workdir`. Checks,
    by name:

    - `trainer-surface`: the trainer is a `BackendTrainer`; `train()` returns `global_step` and metrics,
      `log_history` has each step's loss, `evaluate()` gives `eval_*` metrics, `save_model(path)` returns `path`.
    - `record-schema`: `aligntune_run.json` is valid against the shipped JSON Schema and names the backend and its
      distribution (`written_by`).
    - `pair-counts`: the record's pair counts add up (rows read = kept + dropped, per split, adapter and tokenizer).
    - `eval-and-export`: `aligntune eval` and `aligntune export` work from the run directory.
    - `kill-9-resume`: a run killed with SIGKILL after a checkpoint and resumed with `--resume` gives the same
      per-step losses and bit-identical final weights as the same run uninterrupted.
    - `half-written-checkpoint-skipped`: a newer checkpoint without its completion marker is skipped (with a
      warning naming it) and later replaced.
    - `changed-settings-refused`: another run's checkpoint (changed beta) is not resumed (`ResumeError` naming the
      setting), and a fresh start over it is refused (`OutputDirError`).
    - `non-finite-stop`: a loss that turns NaN at step 3 stops the run (exit code 3), saves no model, leaves no
      non-finite weights and keeps checkpoint-2.
    - `output-dir-lock`: a second run on the output directory of a running one is refused at once (exit code 2).
    - `sigterm-checkpoint`: SIGTERM writes one complete checkpoint and exits 130.

    `options` are added to every run's settings (for example `{"use_lora": True}`); `checks` runs only those named.
    The CLI runs train with a loss plugin the kit writes into `workdir` (see `aligntune.backend_contract`). Returns
    each check's result with its time; raises AssertionError listing every check that failed and why. About a
    minute on two CPU cores for the TRL backend.
    """
    from aligntune.backend_contract import CHECKS, Kit, run_checks

    names = list(CHECKS) if checks is None else list(checks)
    unknown = [name for name in names if name not in CHECKS]
    if unknown:
        raise ValueError(f"unknown contract checks {unknown}; the checks are: {', '.join(CHECKS)}")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    kit = Kit(backend=backend_name, model_dir=Path(model_dir).resolve(), data_file=Path(data_file).resolve(),
              workdir=workdir.resolve(), options=dict(options or {}))
    results = run_checks(kit, names)
    failed = [result for result in results if not result.passed]
    if failed:
        listed = "\n".join(f"- {result.name}: {result.message}" for result in failed)
        raise AssertionError(f"backend {backend_name!r} fails {len(failed)} of {len(results)} contract checks "
                             f"(docs/plugins/writing-a-backend.md):\n{listed}")
    return results
