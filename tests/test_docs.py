"""The reference pages cannot drift from the code: option tables against the config classes (names and defaults),
the TRL migration page against the compatibility module, the CLI page against the parser. (The site itself is
built with `mkdocs build --strict` in the nox `docs` session, so a broken link or API reference fails CI.)"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import attrs
import pytest

from aligntune.core import compat, options
from aligntune.core.config import TrainConfig
from aligntune.eval.config import EvalConfig

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _table_rows(page: str, header: str) -> list[list[str]]:
    """The cells of the table whose header row starts with `header`."""
    lines = (DOCS / page).read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def _documented_default(cell: str):
    match = re.match(r"`([^`]*)`", cell)
    if match is None:
        return cell  # "required", prose
    text = match.group(1)
    if text in ("None", "null"):
        return None
    if text in ("True", "true", "False", "false"):
        return text.lower() == "true"
    if text.startswith('"') and text.endswith('"'):
        return text[1:-1]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"[]": [], "{}": {}}.get(text, text)


def test_configuration_page_lists_every_train_option_with_its_default():
    rows = {re.match(r"`([a-z_0-9]+)`", row[0]).group(1): row[1]
            for row in _table_rows("configuration.md", "| Option") if row[0].startswith("`")}
    fields = {field.name: field for field in attrs.fields(TrainConfig)}
    assert set(rows) == set(fields), (f"undocumented: {sorted(set(fields) - set(rows))}; "
                                      f"gone: {sorted(set(rows) - set(fields))}")
    for name, field in fields.items():
        default = field.default
        if default is attrs.NOTHING:
            assert rows[name].startswith("required"), name
            continue
        if isinstance(default, attrs.Factory):
            default = default.factory()
        assert _documented_default(rows[name]) == default, f"{name}: documented {rows[name]!r}, default {default!r}"


def test_evaluation_page_lists_every_eval_option():
    names = set()
    for row in _table_rows("evaluation.md", "| Option"):
        names.update(re.findall(r"`([a-z_0-9]+)`", row[0]))
    missing = {field.name for field in attrs.fields(EvalConfig)} - names
    assert not missing, f"EvalConfig options missing from docs/evaluation.md: {sorted(missing)}"


def test_evaluation_page_lists_every_eval_alias():
    page = (DOCS / "evaluation.md").read_text(encoding="utf-8")
    missing = sorted(name for name in options.alias_table(EvalConfig) if f"`{name}`" not in page)
    assert not missing, f"EvalConfig aliases missing from docs/evaluation.md: {missing}"


def test_trl_migration_page_lists_every_accepted_trl_name():
    page = (DOCS / "migrating-from-trl.md").read_text(encoding="utf-8")
    names = {*options.names_from(TrainConfig, options.TRL), *compat.TRAINING_ARGS, *compat.MODEL_INIT}
    missing = sorted(name for name in names if f"`{name}`" not in page)
    assert not missing, f"accepted but not on docs/migrating-from-trl.md: {missing}"


def _commands(parser: argparse.ArgumentParser, prefix: str = ""):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prefix}{name}", sub
                yield from _commands(sub, f"{prefix}{name} ")


def test_cli_page_documents_every_command_and_flag():
    from aligntune.cli import _parser

    page = (DOCS / "cli.md").read_text(encoding="utf-8")
    undocumented = []
    for name, sub in _commands(_parser()):
        if f"aligntune {name}" not in page and f"`{name}" not in page:
            undocumented.append(name)
        for action in sub._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag not in ("--help",) and flag not in page:
                    undocumented.append(f"{name} {flag}")
    assert not undocumented, f"not in docs/cli.md: {undocumented}"


def test_plugins_page_shows_the_core_as_it_is():
    pytest.importorskip("aligntune_backend_trl", reason="the example output lists every distribution of the repo")
    from aligntune.plugins import list_plugins

    core = next(plugin for plugin in list_plugins() if plugin.name == "aligntune-core")
    page = (DOCS / "plugins" / "index.md").read_text(encoding="utf-8")
    assert "losses: " + ", ".join(core.provides["losses"]) in page


# A claim of tested behaviour names its test: a test file, a test function, or the nox session that runs it.
_CLAIM = re.compile(r"\btested\b|\btests? (?:check|show)", re.IGNORECASE)
_NOT_A_CLAIM = re.compile(r"\b(?:not|never|un)[- ]?tested\b|not yet tested|tested in its own venv", re.IGNORECASE)
_TEST_REFERENCE = re.compile(r"\btest_\w+|tests/[\w/.:-]+|noxfile\.py|nox -s \w+")


def _prose_blocks(text: str):
    """Paragraphs, list items and whole tables of a Markdown page (fenced code left out), with their first line."""
    block: list[str] = []
    start = 0
    in_fence = False
    in_table = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        table_row = line.startswith("|")
        new_item = bool(re.match(r"\s*(?:[-*]|\d+[.)])\s", line)) or line.startswith("#")
        if not line.strip() or new_item or table_row != in_table:
            if block:
                yield start, " ".join(block)
            block, start = [], number
        in_table = table_row
        if line.strip():
            block.append(line.strip())
            start = start or number
    if block:
        yield start, " ".join(block)


def test_every_claim_of_tested_behaviour_names_its_test():
    pages = [DOCS.parent / "README.md", *sorted(DOCS.rglob("*.md"))]
    unnamed = []
    for page in pages:
        for line, block in _prose_blocks(page.read_text(encoding="utf-8")):
            if _CLAIM.search(_NOT_A_CLAIM.sub("", block)) and not _TEST_REFERENCE.search(block):
                unnamed.append(f"{page.relative_to(DOCS.parent)}:{line}: {block[:100]}")
    assert not unnamed, "claims of tested behaviour that name no test:\n" + "\n".join(unnamed)
