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
    monkeypatch.delenv("ALIGNTUNE_ALLOW_PLUGINS", raising=False)
    reset_registry()
    yield tmp_path
    reset_registry()
    # Forget the fake plugin modules, so that a later test can define a module of the same name differently.
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(tmp_path)):
            del sys.modules[name]


def test_good_plugin_provides_its_loss_and_builtins_register_alongside(site):
    write_fake_distribution(site, "aligntune-loss-double", "1.2.0", {"double": "double_loss"}, {"double_loss": GOOD})
    registry = PluginRegistry(entry_points=_entry_points(site))
    info = {p.name: p for p in registry.plugins}
    assert info["aligntune-loss-double"].status == "ok"
    assert info["aligntune-loss-double"].version == "1.2.0"
    assert info["aligntune-loss-double"].provides["losses"] == ["double-hinge"]
    assert {"sigmoid", "hinge", "ipo", "double-hinge"} <= set(registry.names("losses"))
    assert info["aligntune-core"].provides["dataset_adapters"] == ["preference"]


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
    assert registry.lookup("losses", "sigmoid").plugin.name == "aligntune-core"


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

    monkeypatch.setenv(
        "ALIGNTUNE_DISABLE_PLUGINS", "aligntune-backend-trl,aligntune-backend-unsloth,aligntune-data-hh-rlhf"
    )
    plugins.reset_registry()
    with pytest.raises(UnknownPluginError, match=r"pip install ./plugins/aligntune-backend-unsloth .*not on the package index"):
        plugins.get_backend("unsloth")
    with pytest.raises(UnknownPluginError, match=r"Did you mean 'hinge'\?.*Available: aot, .*hinge, ipo, .*sigmoid, "):
        plugins.get_loss("hinje")
    with pytest.raises(UnknownPluginError, match=r"pip install ./plugins/aligntune-data-hh-rlhf"):
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
    assert set(records["aligntune-core"]) == {"name", "version", "status", "provides", "error"}
    assert {"sigmoid", "hinge", "ipo", "simpo", "sft", "discopop"} <= set(records["aligntune-core"]["provides"]["losses"])
    assert records["aligntune-loss-double"]["provides"] == {
        "backends": [], "losses": ["double-hinge"], "dataset_adapters": [], "metrics": [], "judges": []
    }
    assert records["aligntune-core"]["provides"]["metrics"] == [
        "reward_margin", "preference_accuracy", "win_rate", "kl_divergence", "log_ratio", "implicit_reward",
        "calibration", "reward_accuracy", "policy_entropy"]
    assert records["aligntune-core"]["provides"]["judges"] == ["reward_model"]
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


# -- isolation: one broken plugin never takes the others (or the CLI) down -------------------------------------------

EXITS_AT_IMPORT = """
import sys
sys.exit(3)
"""

TYPO_HOOK = """
from aligntune.plugins import hookimpl

@hookimpl
def aligntune_loss():
    return []
"""

WRONG_SIGNATURE = """
from aligntune.plugins import LossSpec, hookimpl

@hookimpl
def aligntune_losses(config):
    yield LossSpec(name="needs-config", summary="Takes an argument", fn=lambda inputs: inputs.logits)
"""


def _by_name(registry):
    return {p.name: p for p in registry.plugins}


def test_sys_exit_at_import_fails_that_plugin_only(site):
    write_fake_distribution(site, "exit-plugin", "0.2", {"exit": "exit_mod"}, {"exit_mod": EXITS_AT_IMPORT})
    write_fake_distribution(site, "aligntune-loss-double", "1.2.0", {"double": "double_loss"}, {"double_loss": GOOD})
    registry = PluginRegistry(entry_points=_entry_points(site))
    info = _by_name(registry)
    assert info["exit-plugin"].status == "failed"
    error = info["exit-plugin"].error
    assert "failed to import" in error and "SystemExit" in error and "sys.exit(3)" in error
    assert "exit = exit_mod" in error  # where: the entry point
    assert "ALIGNTUNE_DISABLE_PLUGINS=exit-plugin" in error  # what to do
    assert "\n" not in error
    assert info["aligntune-loss-double"].status == "ok"
    assert registry.lookup("losses", "double-hinge").plugin.name == "aligntune-loss-double"


class_source = """
from aligntune.plugins import LossSpec, MetricSpec, hookimpl

class PluginAbort(BaseException):
    pass

@hookimpl
def aligntune_metrics():
    yield MetricSpec(name="never-seen", summary="From a plugin whose other hook fails", compute=len)

@hookimpl
def aligntune_losses():
    yield LossSpec(name="first-loss", summary="Yielded before the failure", fn=len)
    {raise_statement}
"""


@pytest.mark.parametrize(
    ("raise_statement", "expected"),
    [
        ("raise SystemExit(4)", "aligntune_losses raised SystemExit: called sys.exit(4)"),
        ("raise PluginAbort('stop everything')", "aligntune_losses raised PluginAbort: stop everything"),
        ("raise GeneratorExit()", "aligntune_losses raised GeneratorExit"),
    ],
)
def test_base_exception_in_a_hook_fails_that_plugin_only(site, raise_statement, expected):
    source = class_source.replace("{raise_statement}", raise_statement)
    write_fake_distribution(site, "abort-plugin", "1.0", {"abort": "abort_mod"}, {"abort_mod": source})
    write_fake_distribution(site, "aligntune-loss-double", "1.2.0", {"double": "double_loss"}, {"double_loss": GOOD})
    registry = PluginRegistry(entry_points=_entry_points(site))
    info = _by_name(registry)
    assert info["abort-plugin"].status == "failed"
    assert expected in info["abort-plugin"].error
    # A failed plugin provides nothing, not even what its other hooks (or the failing hook before it raised) gave.
    assert info["abort-plugin"].provides == {kind: [] for kind in info["abort-plugin"].provides}
    assert "never-seen" not in registry.names("metrics") and "first-loss" not in registry.names("losses")
    assert "double-hinge" in registry.names("losses") and "sigmoid" in registry.names("losses")


def test_keyboard_interrupt_in_a_plugin_is_not_swallowed(site):
    source = class_source.replace("{raise_statement}", "raise KeyboardInterrupt")
    write_fake_distribution(site, "abort-plugin", "1.0", {"abort": "abort_mod"}, {"abort_mod": source})
    with pytest.raises(KeyboardInterrupt):
        PluginRegistry(entry_points=_entry_points(site))


def test_misspelt_hook_fails_that_plugin_only_and_suggests_the_real_hook(site):
    write_fake_distribution(site, "typo-plugin", "1.0", {"typo": "typo_mod"}, {"typo_mod": TYPO_HOOK})
    write_fake_distribution(site, "aligntune-loss-double", "1.2.0", {"double": "double_loss"}, {"double_loss": GOOD})
    registry = PluginRegistry(entry_points=_entry_points(site))
    info = _by_name(registry)
    assert info["typo-plugin"].status == "failed"
    assert "aligntune_loss is not an aligntune hook. Did you mean 'aligntune_losses'?" in info["typo-plugin"].error
    assert "ALIGNTUNE_DISABLE_PLUGINS=typo-plugin" in info["typo-plugin"].error
    assert info["aligntune-loss-double"].status == "ok"
    assert "double-hinge" in registry.names("losses")


def test_misspelt_hook_is_a_plugin_error_in_strict_mode(site, monkeypatch):
    write_fake_distribution(site, "typo-plugin", "1.0", {"typo": "typo_mod"}, {"typo_mod": TYPO_HOOK})
    monkeypatch.setenv("ALIGNTUNE_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match=r"typo-plugin 1\.0 .*aligntune_loss is not an aligntune hook"):
        PluginRegistry(entry_points=_entry_points(site))


def test_hook_with_a_wrong_signature_fails_that_plugin_only(site):
    write_fake_distribution(site, "sig-plugin", "1.0", {"sig": "sig_mod"}, {"sig_mod": WRONG_SIGNATURE})
    write_fake_distribution(site, "aligntune-loss-double", "1.2.0", {"double": "double_loss"}, {"double_loss": GOOD})
    registry = PluginRegistry(entry_points=_entry_points(site))
    info = _by_name(registry)
    assert info["sig-plugin"].status == "failed"
    assert "aligntune_losses(config) takes arguments; aligntune hooks take none" in info["sig-plugin"].error
    assert "needs-config" not in registry.names("losses")
    assert "double-hinge" in registry.names("losses")


def test_cli_commands_keep_working_with_broken_plugins_and_strict_mode_prints_one_line(site, monkeypatch, capsys):
    from aligntune.cli import main

    write_fake_distribution(site, "sig-plugin", "1.0", {"sig": "sig_mod"}, {"sig_mod": WRONG_SIGNATURE})
    write_fake_distribution(site, "typo-plugin", "1.0", {"typo": "typo_mod"}, {"typo_mod": TYPO_HOOK})
    assert main(["plugins", "list"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[2] for line in out.splitlines()[1:] if line.strip() and "(" not in line}
    assert rows["sig-plugin"] == rows["typo-plugin"] == "failed"
    assert rows["aligntune-core"] == "ok"
    assert "typo-plugin (failed): entry point 'typo = typo_mod' is invalid: aligntune_loss" in out

    monkeypatch.setenv("ALIGNTUNE_STRICT_PLUGINS", "1")
    reset_registry()
    assert main(["plugins", "list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("aligntune: error: plugin sig-plugin 1.0") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ('LossSpec(name="str-loss", summary="fn is a string", fn="str")',
         "LossSpec 'str-loss': fn must be callable (a function, or lazy('module:function')), got str 'str'"),
        ('LossSpec(name="flag-loss", summary="flag is not a bool", fn=len, requires_reference="no")',
         "LossSpec 'flag-loss': requires_reference must be True or False, got str 'no'"),
        ('{"name": "dict-loss", "fn": len}', "aligntune_losses yielded dict"),
    ],
)
def test_bad_record_fails_that_plugin_at_load_not_at_use(site, record, expected):
    source = f"""
from aligntune.plugins import LossSpec, hookimpl

@hookimpl
def aligntune_losses():
    yield {record}
"""
    write_fake_distribution(site, "bad-record", "1.0", {"bad": "bad_mod"}, {"bad_mod": source})
    registry = PluginRegistry(entry_points=_entry_points(site))
    info = _by_name(registry)
    assert info["bad-record"].status == "failed"
    assert expected in info["bad-record"].error
    assert info["bad-record"].provides["losses"] == []
    assert "sigmoid" in registry.names("losses")


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ('BackendSpec(name="b", summary="s", create_trainer=None)', "BackendSpec 'b': create_trainer must be callable"),
        ('BackendSpec(name="b", summary="s", create_trainer=len, load_model=3)', "BackendSpec 'b': load_model must be"),
        ('DatasetAdapterSpec(name="d", summary="s", load="x")', "DatasetAdapterSpec 'd': load must be callable"),
        ('DatasetAdapterSpec(name="d", summary="s", load=len, dataset_names="me/toy")',
         "dataset_names must be a tuple of hub ids such as ('me/toy',)"),
        ('MetricSpec(name="m", summary="s", compute=1.5)', "MetricSpec 'm': compute must be callable"),
        ('JudgeSpec(name="j", summary="s", create="judge")', "JudgeSpec 'j': create must be callable"),
        ('LossSpec(name="l", summary="s", fn=len, params=["x"])', "LossSpec 'l': params must be a dict"),
    ],
)
def test_record_fields_are_type_checked(record, expected):
    from aligntune.plugins import BackendSpec, DatasetAdapterSpec, JudgeSpec, LossSpec, MetricSpec  # noqa: F401

    with pytest.raises(TypeError) as excinfo:
        eval(record)
    assert expected in str(excinfo.value)


def test_lazy_callables_are_accepted_and_import_nothing_at_discovery(site):
    source = """
from aligntune.plugins import LossSpec, hookimpl, lazy

@hookimpl
def aligntune_losses():
    yield LossSpec(name="lazy-loss", summary="Imported on first use", fn=lazy("lazy_loss_formulas_xyz:loss"))
"""
    write_fake_distribution(site, "lazy-plugin", "1.0", {"lazy": "lazy_mod"}, {"lazy_mod": source})
    registry = PluginRegistry(entry_points=_entry_points(site))
    assert _by_name(registry)["lazy-plugin"].status == "ok"
    assert callable(registry.lookup("losses", "lazy-loss").record.fn)
    assert "lazy_loss_formulas_xyz" not in sys.modules


# -- conflicts block one name, only when it is used -------------------------------------------------------------------

ADAPTER = """
from aligntune.plugins import DatasetAdapterSpec, hookimpl

def _load(request):
    raise RuntimeError("this adapter must not be used for {dist}")

@hookimpl
def aligntune_dataset_adapters():
    yield DatasetAdapterSpec(name="shared-name", summary="Adapter from {dist}", load=_load,
                             dataset_names=("someone/shared-data",))
"""


def test_duplicate_adapter_names_do_not_block_an_unrelated_local_file(site, pairs_jsonl):
    from aligntune import plugins
    from aligntune.data import load_preference_data

    for dist, module in (("adapters-one", "adapters_one"), ("adapters-two", "adapters_two")):
        write_fake_distribution(site, dist, "1.0", {"data": module}, {module: ADAPTER.replace("{dist}", dist)})
    plugins.reset_registry()
    assert plugins.resolve_dataset_adapter(str(pairs_jsonl)).name == "preference"
    data = load_preference_data(str(pairs_jsonl))
    assert len(data.dataset) == 64 and set(data.dataset.column_names) >= {"prompt", "chosen", "rejected"}
    # The conflicting name itself, and the hub id only its adapters claim, are blocked with a clear error.
    with pytest.raises(PluginConflictError, match=r"adapters-one 1\.0 and adapters-two 1\.0"):
        plugins.resolve_dataset_adapter("someone/shared-data")
    suggestion = "ALIGNTUNE_DISABLE_PLUGINS=adapters-one or ALIGNTUNE_DISABLE_PLUGINS=adapters-two"
    with pytest.raises(PluginConflictError, match=suggestion):
        plugins.get_dataset_adapter("shared-name")


def test_conflict_is_raised_only_when_the_name_is_used(site, capsys):
    from aligntune import plugins
    from aligntune.cli import main

    both = GOOD + """
@hookimpl
def aligntune_metrics():
    from aligntune.plugins import MetricSpec
    yield MetricSpec(name="only-here", summary="No one else has it", compute=len)
"""
    write_fake_distribution(site, "aligntune-loss-double", "1.2.0", {"double": "double_loss"}, {"double_loss": both})
    write_fake_distribution(site, "copycat-losses", "0.3.1", {"copy": "copycat"}, {"copycat": DUPLICATE})
    plugins.reset_registry()
    assert main(["plugins", "list"]) == 0
    out = capsys.readouterr().out
    assert (
        "conflicting plugins: loss 'double-hinge' is provided by aligntune-loss-double 1.2.0 and copycat-losses 0.3.1"
    ) in out
    statuses = {p.name: p.status for p in plugins.list_plugins()}
    assert statuses["aligntune-loss-double"] == statuses["copycat-losses"] == "conflict"
    # Unrelated names, including another name from a plugin in conflict, resolve.
    assert plugins.get_loss("sigmoid").name == "sigmoid"
    assert plugins.get_metric("only-here").name == "only-here"
    with pytest.raises(PluginConflictError) as excinfo:
        plugins.get_loss("double-hinge")
    message = str(excinfo.value)
    assert "aligntune-loss-double 1.2.0" in message and "copycat-losses 0.3.1" in message
    assert "ALIGNTUNE_DISABLE_PLUGINS=" in message


# -- allow-list ------------------------------------------------------------------------------------------------------

def test_allow_list_loads_only_the_named_distributions(site, monkeypatch):
    write_fake_distribution(site, "aligntune-loss-double", "1.2.0", {"double": "double_loss"}, {"double_loss": GOOD})
    write_fake_distribution(site, "broken-plugin", "0.1", {"broken": "broken_mod"}, {"broken_mod": BROKEN})
    write_fake_distribution(site, "exit-plugin", "0.2", {"exit": "exit_mod"}, {"exit_mod": EXITS_AT_IMPORT})
    monkeypatch.setenv("ALIGNTUNE_ALLOW_PLUGINS", " Aligntune_Loss_Double ")
    monkeypatch.setenv("ALIGNTUNE_STRICT_PLUGINS", "1")  # importing a blocked plugin would raise
    registry = PluginRegistry(entry_points=_entry_points(site))
    info = _by_name(registry)
    assert info["aligntune-loss-double"].status == "ok"
    for name in ("broken-plugin", "exit-plugin"):
        assert info[name].status == "blocked"
        assert info[name].error == "not in ALIGNTUNE_ALLOW_PLUGINS"
    assert info["aligntune-core"].status == "ok"  # the core's built-ins always load
    assert {"sigmoid", "double-hinge"} <= set(registry.names("losses"))


def test_empty_allow_list_loads_no_third_party_and_disable_wins(site, monkeypatch):
    write_fake_distribution(site, "aligntune-loss-double", "1.2.0", {"double": "double_loss"}, {"double_loss": GOOD})
    monkeypatch.setenv("ALIGNTUNE_ALLOW_PLUGINS", "")
    registry = PluginRegistry(entry_points=_entry_points(site))
    assert _by_name(registry)["aligntune-loss-double"].status == "blocked"
    assert "double-hinge" not in registry.names("losses") and "sigmoid" in registry.names("losses")

    monkeypatch.setenv("ALIGNTUNE_ALLOW_PLUGINS", "aligntune-loss-double")
    monkeypatch.setenv("ALIGNTUNE_DISABLE_PLUGINS", "aligntune-loss-double")
    info = _by_name(PluginRegistry(entry_points=_entry_points(site)))["aligntune-loss-double"]
    assert (info.status, info.error) == ("blocked", "blocked by ALIGNTUNE_DISABLE_PLUGINS")


def test_cli_plugins_list_survives_a_plugin_that_calls_sys_exit(site):
    import os

    write_fake_distribution(site, "exit-plugin", "0.2", {"exit": "exit_mod"}, {"exit_mod": EXITS_AT_IMPORT})
    write_fake_distribution(site, "typo-plugin", "1.0", {"typo": "typo_mod"}, {"typo_mod": TYPO_HOOK})
    # No plugin settings from the caller's environment (strict mode would turn the listing into an error).
    env = {key: value for key, value in os.environ.items() if key not in {
        "ALIGNTUNE_STRICT_PLUGINS", "ALIGNTUNE_DISABLE_PLUGINS", "ALIGNTUNE_ALLOW_PLUGINS"}}
    env["PYTHONPATH"] = str(site)
    proc = subprocess.run([sys.executable, "-m", "aligntune", "plugins", "list"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    table = proc.stdout.split("\n\n")[0]
    rows = {line.split()[0]: line.split() for line in table.splitlines()}
    assert rows["exit-plugin"][:3] == ["exit-plugin", "0.2", "failed"]
    assert rows["typo-plugin"][2] == "failed"
    assert rows["aligntune-core"][2] == "ok"
    assert (
        "exit-plugin (failed): entry point 'exit = exit_mod' failed to import: SystemExit: called sys.exit(3) "
        "(skip it with ALIGNTUNE_DISABLE_PLUGINS=exit-plugin)"
    ) in proc.stdout


PATH_CLAIMER = """
from aligntune.plugins import DatasetAdapterSpec, hookimpl
from aligntune.data import PreferenceData, rows_to_dataset

def _load(request):
    return PreferenceData(dataset=rows_to_dataset([{"prompt": "x", "chosen": "foreign", "rejected": "y"}] * 8),
                          report={"kept": 8})

@hookimpl
def aligntune_dataset_adapters():
    yield DatasetAdapterSpec(name="grabber", summary="claims a path", load=_load, dataset_names=(CLAIMED,))
"""


def test_a_plugin_cannot_take_over_the_users_own_file_and_the_report_names_the_adapter(site, pairs_jsonl):
    from aligntune.data import load_preference_data

    write_fake_distribution(site, "aligntune-grabber", "6.6.6", {"grabber": "grabber_mod"},
                            {"grabber_mod": PATH_CLAIMER.replace("CLAIMED", repr(str(pairs_jsonl)))})
    data = load_preference_data(str(pairs_jsonl))
    assert len(data.dataset) == 64 and "foreign" not in data.dataset["chosen"]  # the user's 64 pairs, not its 8
    assert data.report["adapter"] == {"name": "preference", "distribution": "aligntune-core",
                                      "version": data.report["adapter"]["version"]}
    # Asked for by name, the plugin serves the request, and the report says which distribution did.
    named = load_preference_data(str(pairs_jsonl), dataset_adapter="grabber")
    assert len(named.dataset) == 8
    assert named.report["adapter"] == {"name": "grabber", "distribution": "aligntune-grabber", "version": "6.6.6"}


def test_the_top_level_package_offers_the_entry_points_lazily():
    code = (
        "import sys, aligntune\n"
        "assert not [m for m in ('torch', 'transformers', 'trl', 'datasets') if m in sys.modules]\n"
        "from aligntune import EvalConfig, TrainConfig, create_rl_trainer, hookimpl, run_eval\n"
        "from aligntune.core.backend_factory import create_rl_trainer as documented\n"
        "from aligntune.eval.core import run_eval as documented_eval\n"
        "assert create_rl_trainer is documented and run_eval is documented_eval\n"
        "assert {'create_rl_trainer', 'run_eval', 'EvalConfig', 'hookimpl'} <= set(dir(aligntune))\n"
        "try:\n"
        "    aligntune.create_rl_trainr\n"
        "except AttributeError as exc:\n"
        "    assert 'create_rl_trainr' in str(exc)\n"
        "else:\n"
        "    raise SystemExit('a misspelt name must be an AttributeError')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
