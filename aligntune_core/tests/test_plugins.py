"""Plugin discovery against fake installed distributions (nothing is pip-installed)."""

from __future__ import annotations

import importlib.metadata as metadata
import json
import subprocess
import sys

import pytest

from aligntune.errors import PluginConflictError, PluginError, UnknownPluginError
from aligntune.plugins import PluginRegistry, reset_registry
from conftest import write_fake_distribution

GOOD = """
from aligntune.plugins import LossSpec, hookimpl

def _double_hinge(inputs):
    import torch
    return 2 * torch.relu(1 - inputs.beta * inputs.logits)

@hookimpl
def aligntune_losses():
    yield LossSpec(name="double-hinge", summary="Twice the hinge loss", fn=_double_hinge)
"""

BROKEN = """
import a_module_that_does_not_exist  # noqa
"""

DUPLICATE = """
from aligntune.plugins import LossSpec, hookimpl

@hookimpl
def aligntune_losses():
    yield LossSpec(name="double-hinge", summary="Another loss with the same name", fn=lambda inputs: inputs.logits)
"""


def _entry_points(root):
    return [ep for ep in metadata.distributions(path=[str(root)]) for ep in ep.entry_points if ep.group == "aligntune"]


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("ALIGNTUNE_STRICT_PLUGINS", raising=False)
    monkeypatch.delenv("ALIGNTUNE_DISABLE_PLUGINS", raising=False)
    reset_registry()
    yield tmp_path
    reset_registry()


def test_good_plugin_provides_its_loss_and_builtins_register_alongside(site):
    write_fake_distribution(site, "aligntune-loss-double", "1.2.0", {"double": "double_loss"}, {"double_loss": GOOD})
    registry = PluginRegistry(entry_points=_entry_points(site))
    info = {p.name: p for p in registry.plugins}
    assert info["aligntune-loss-double"].status == "ok"
    assert info["aligntune-loss-double"].version == "1.2.0"
    assert info["aligntune-loss-double"].provides["losses"] == ["double-hinge"]
    assert {"sigmoid", "hinge", "ipo", "double-hinge"} <= set(registry.names("losses"))
    assert info["aligntune"].provides["dataset_adapters"] == ["preference"]


def test_failing_import_is_recorded_and_the_rest_keeps_working(site):
    write_fake_distribution(site, "broken-plugin", "0.1", {"broken": "broken_mod"}, {"broken_mod": BROKEN})
    write_fake_distribution(site, "aligntune-loss-double", "1.2.0", {"double": "double_loss"}, {"double_loss": GOOD})
    registry = PluginRegistry(entry_points=_entry_points(site))
    info = {p.name: p for p in registry.plugins}
    assert info["broken-plugin"].status == "failed"
    assert "a_module_that_does_not_exist" in info["broken-plugin"].error
    assert "double-hinge" in registry.names("losses")


def test_strict_mode_makes_a_failing_import_fatal(site, monkeypatch):
    write_fake_distribution(site, "broken-plugin", "0.1", {"broken": "broken_mod"}, {"broken_mod": BROKEN})
    monkeypatch.setenv("ALIGNTUNE_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match=r"broken-plugin 0\.1 .*failed to import.*a_module_that_does_not_exist"):
        PluginRegistry(entry_points=_entry_points(site))


def test_disabled_distribution_is_blocked_and_not_imported(site, monkeypatch):
    write_fake_distribution(site, "broken-plugin", "0.1", {"broken": "broken_mod"}, {"broken_mod": BROKEN})
    monkeypatch.setenv("ALIGNTUNE_DISABLE_PLUGINS", "other, broken_plugin")
    monkeypatch.setenv("ALIGNTUNE_STRICT_PLUGINS", "1")  # importing it would raise
    registry = PluginRegistry(entry_points=_entry_points(site))
    info = {p.name: p for p in registry.plugins}
    assert info["broken-plugin"].status == "blocked"


def test_duplicate_names_error_names_both_distributions_and_versions(site):
    write_fake_distribution(site, "aligntune-loss-double", "1.2.0", {"double": "double_loss"}, {"double_loss": GOOD})
    write_fake_distribution(site, "copycat-losses", "0.3.1", {"copy": "copycat"}, {"copycat": DUPLICATE})
    registry = PluginRegistry(entry_points=_entry_points(site))
    with pytest.raises(PluginConflictError) as excinfo:
        registry.lookup("losses", "double-hinge")
    message = str(excinfo.value)
    assert "aligntune-loss-double 1.2.0" in message and "copycat-losses 0.3.1" in message
    statuses = {p.name: p.status for p in registry.plugins}
    assert statuses["aligntune-loss-double"] == statuses["copycat-losses"] == "conflict"
    # Names nobody else claims still resolve.
    assert registry.lookup("losses", "sigmoid").plugin.name == "aligntune"


def test_misspelt_hook_is_an_error(site):
    source = """
from aligntune.plugins import hookimpl

@hookimpl
def aligntune_loss():
    return []
"""
    write_fake_distribution(site, "typo-plugin", "1.0", {"typo": "typo_mod"}, {"typo_mod": source})
    with pytest.raises(Exception, match="aligntune_loss"):
        PluginRegistry(entry_points=_entry_points(site))


def test_invalid_record_name_fails_that_plugin_only(site):
    source = """
from aligntune.plugins import LossSpec, hookimpl

@hookimpl
def aligntune_losses():
    yield LossSpec(name="Bad Name", summary="x", fn=lambda inputs: inputs.logits)
"""
    write_fake_distribution(site, "bad-record", "1.0", {"bad": "bad_mod"}, {"bad_mod": source})
    registry = PluginRegistry(entry_points=_entry_points(site))
    info = {p.name: p for p in registry.plugins}
    assert info["bad-record"].status == "failed"
    assert "Bad Name" in info["bad-record"].error
    assert "sigmoid" in registry.names("losses")


def test_unknown_names_list_what_is_available_and_how_to_install_first_party(site, monkeypatch):
    from aligntune import plugins

    monkeypatch.setenv("ALIGNTUNE_DISABLE_PLUGINS", "aligntune-backend-trl,aligntune-backend-unsloth,aligntune-data-hh-rlhf")
    plugins.reset_registry()
    with pytest.raises(UnknownPluginError, match=r"pip install aligntune-backend-unsloth"):
        plugins.get_backend("unsloth")
    with pytest.raises(UnknownPluginError, match=r"Did you mean 'hinge'\?.*Available: aot, .*hinge, ipo, .*sigmoid, "):
        plugins.get_loss("hinje")
    with pytest.raises(UnknownPluginError, match=r"pip install aligntune-data-hh-rlhf"):
        plugins.resolve_dataset_adapter("Anthropic/hh-rlhf")


def test_unavailable_backend_is_listed_with_reason_and_raises_on_use(site):
    from aligntune import plugins
    from aligntune.errors import BackendUnavailableError

    source = """
from aligntune.plugins import BackendSpec, hookimpl

@hookimpl
def aligntune_backends():
    yield BackendSpec(name="gpu-only", summary="Needs a GPU", create_trainer=lambda c: None,
                      unavailable_reason="no CUDA device found")
"""
    write_fake_distribution(site, "gpu-backend", "2.0", {"gpu": "gpu_backend_mod"}, {"gpu_backend_mod": source})
    plugins.reset_registry()
    listed = {p.name: p for p in plugins.list_plugins()}
    assert listed["gpu-backend"].status == "unavailable"
    assert "no CUDA device found" in listed["gpu-backend"].error
    with pytest.raises(BackendUnavailableError, match="no CUDA device found"):
        plugins.get_backend("gpu-only")


def test_listing_json_shows_every_plugin_and_imports_no_heavy_library(site):
    write_fake_distribution(site, "aligntune-loss-double", "1.2.0", {"double": "double_loss"}, {"double_loss": GOOD})
    write_fake_distribution(site, "broken-plugin", "0.1", {"broken": "broken_mod"}, {"broken_mod": BROKEN})
    code = (
        "import sys, json\n"
        "from aligntune.cli import main\n"
        "rc = main(['plugins', 'list', '--json'])\n"
        "heavy = [m for m in ('torch', 'transformers', 'trl', 'datasets') if m in sys.modules]\n"
        "print('HEAVY=' + json.dumps(heavy))\n"
        "sys.exit(rc)\n"
    )
    env_path = str(site)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**__import__("os").environ, "PYTHONPATH": env_path}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    listing_text, heavy_line = proc.stdout.rsplit("HEAVY=", 1)
    assert json.loads(heavy_line) == []
    records = {r["name"]: r for r in json.loads(listing_text)}
    assert set(records["aligntune"]) == {"name", "version", "status", "provides", "error"}
    assert {"sigmoid", "hinge", "ipo", "simpo", "sft", "discopop"} <= set(records["aligntune"]["provides"]["losses"])
    assert records["aligntune-loss-double"]["provides"] == {
        "backends": [], "losses": ["double-hinge"], "dataset_adapters": [], "metrics": [], "judges": []
    }
    assert records["aligntune"]["provides"]["metrics"] == ["reward_margin", "preference_accuracy", "win_rate"]
    assert records["aligntune"]["provides"]["judges"] == ["reward_model"]
    assert records["broken-plugin"]["status"] == "failed"
    assert "a_module_that_does_not_exist" in records["broken-plugin"]["error"]


def test_listing_table_is_aligned(site, capsys):
    from aligntune.cli import main

    write_fake_distribution(site, "aligntune-loss-double", "1.2.0", {"double": "double_loss"}, {"double_loss": GOOD})
    assert main(["plugins", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0]
    assert header.split() == ["Name", "Version", "Status", "Provides"]
    row = next(line for line in lines if line.startswith("aligntune-loss-double"))
    assert row.index("1.2.0") == header.index("Version")
    assert row.index("ok") == header.index("Status")
    assert "losses: double-hinge" in row
