"""The backend seam: what `create_trainer` returns is checked against `BackendTrainer`, through real plugin discovery
of a fake installed backend (nothing is pip-installed, nothing is mocked)."""

from __future__ import annotations

import json
import sys

import pytest

from aligntune.core.backend_factory import create_rl_trainer
from aligntune.errors import BackendContractError
from aligntune.plugins import BackendTrainer, reset_registry
from aligntune.plugins.trainer_protocol import ATTRIBUTES, METHODS, missing_members
from aligntune.testing import write_fake_distribution

BACKEND = """
from aligntune.plugins import BackendSpec, hookimpl


class HalfTrainer:
    # train and config only: no evaluate, save_model or log_history
    def __init__(self, config):
        self.config = config

    def train(self, resume_from_checkpoint=None):
        return None


class WholeTrainer(HalfTrainer):
    log_history = []

    def evaluate(self):
        return {}

    def save_model(self, output_dir=None):
        return output_dir or self.config.output_dir


class NotCallable(WholeTrainer):
    evaluate = "not a method"


@hookimpl
def aligntune_backends():
    yield BackendSpec(name="half", summary="A trainer missing members", create_trainer=HalfTrainer)
    yield BackendSpec(name="whole", summary="A trainer with every member", create_trainer=WholeTrainer)
    yield BackendSpec(name="not-callable", summary="evaluate is not a method", create_trainer=NotCallable)
"""


@pytest.fixture
def fake_backends(tmp_path, monkeypatch):
    site = tmp_path / "site"
    write_fake_distribution(site, "aligntune-backend-fake", "0.3.1", {"fake": "fake_backend_mod"},
                            {"fake_backend_mod": BACKEND})
    monkeypatch.syspath_prepend(str(site))
    for name in ("ALIGNTUNE_STRICT_PLUGINS", "ALIGNTUNE_DISABLE_PLUGINS", "ALIGNTUNE_ALLOW_PLUGINS"):
        monkeypatch.delenv(name, raising=False)
    reset_registry()
    yield tmp_path
    reset_registry()
    sys.modules.pop("fake_backend_mod", None)


def _options(tmp_path, backend: str) -> dict:
    data = tmp_path / "pairs.jsonl"
    data.write_text(json.dumps({"prompt": "1+1=", "chosen": " 2", "rejected": " 3"}) + "\n", encoding="utf-8")
    return dict(model_name="some/model", dataset_name=str(data), backend=backend, output_dir=str(tmp_path / "run"))


def test_a_trainer_lacking_members_is_refused_naming_the_plugin_and_the_members(fake_backends):
    with pytest.raises(BackendContractError) as caught:
        create_rl_trainer(**_options(fake_backends, "half"))
    message = str(caught.value)
    assert "backend 'half' (aligntune-backend-fake 0.3.1) returned a HalfTrainer" in message
    assert "lacks evaluate, save_model, log_history:" in message
    assert "report it to its authors" in message and "writing-a-backend.md" in message


def test_a_member_that_is_not_callable_counts_as_missing(fake_backends):
    with pytest.raises(BackendContractError, match=r"lacks evaluate \(not callable\):"):
        create_rl_trainer(**_options(fake_backends, "not-callable"))


def test_a_trainer_with_every_member_is_returned(fake_backends):
    trainer = create_rl_trainer(**_options(fake_backends, "whole"))
    assert type(trainer).__name__ == "WholeTrainer" and isinstance(trainer, BackendTrainer)
    assert trainer.config.backend == "whole"


def test_the_members_checked_are_the_protocols():
    declared = {name for name in vars(BackendTrainer) if not name.startswith("_")}
    assert declared == set(METHODS) | set(ATTRIBUTES)
    assert missing_members(object()) == list(METHODS) + list(ATTRIBUTES)


def test_the_contract_kit_names_each_failed_check_and_why(fake_backends):
    from aligntune.testing import check_backend_contract

    options = _options(fake_backends, "half")
    with pytest.raises(AssertionError) as caught:
        check_backend_contract("half", model_dir=options["model_name"], data_file=options["dataset_name"],
                               workdir=fake_backends / "work", checks=["trainer-surface", "record-schema"])
    message = str(caught.value)
    assert message.startswith("backend 'half' fails 2 of 2 contract checks")
    assert "- trainer-surface: (the in-process run) create_rl_trainer(backend='half', max_steps=3)" in message
    assert "raised BackendContractError: backend 'half' (aligntune-backend-fake 0.3.1)" in message
    assert "- record-schema: (the in-process run)" in message
    with pytest.raises(ValueError, match="unknown contract checks \\['kill-9'\\]; the checks are: trainer-surface"):
        check_backend_contract("half", model_dir="m", data_file="d", workdir=fake_backends / "w", checks=["kill-9"])
