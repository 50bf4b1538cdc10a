"""Every figure the docs quote from a benchmark comes from a result stored in docs/benchmarks/ (written by the
benchmark's `--json PATH`), and the page and the file agree. Nothing is run here: the results are read.

How a quoted figure is tied to its file:

- the run tables of docs/performance.md follow a marker `<!-- result: benchmarks/<file>.json -->`; every row is
  rebuilt from that file's run (its label names the run, `RUN_LABELS`) and must equal the page's row;
- the figures in prose are listed in `FIGURES`: a text with `{placeholders}`, each bound to a key of a stored result
  and a format; the text, filled in from the file, must appear on the page (whitespace-insensitive).

The "Measured" section of docs/performance.md may hold no ratio (`N×`) that neither of these checks.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RESULTS = DOCS / "benchmarks"

RUN_LABELS = {
    "plain TRL": "trl",
    "TRL, precompute (cold)": "trl-precompute",
    "TRL, precompute (warm)": "trl-precompute-warm",
    "aligntune, two rows per pair": "aligntune-unshared",
    "aligntune, prefix sharing": "aligntune-shared",
    "aligntune, sharing + packing": "aligntune-packed",
    "aligntune, + precompute (cold cache)": "aligntune-precompute",
    "aligntune, + precompute (warm cache)": "aligntune-precompute-warm",
    "aligntune defaults (sharing + packing + precompute, cold)": "aligntune",
    "aligntune defaults": "aligntune",
}

SHIPPED = "dpo_speed-shipped.json"
HARMLESS = "dpo_speed-harmless-base.json"
MODEL_50M = "dpo_speed-50m.json"
PREPARATION = "data_preparation.json"
CONVERSION = "hh_rlhf_conversion.json"
LARGE_FILE = "large_file_load.json"

# (page, text with {placeholders}, {placeholder: (result file, key path, format)}).
FIGURES: list[tuple[str, str, dict[str, tuple[str, str, str]]]] = []


def _result(name: str) -> dict:
    return json.loads((RESULTS / name).read_text(encoding="utf-8"))


def _key(record: dict, path: str):
    value = record
    for part in path.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def _fmt(value, spec: str) -> str:
    """Formats as the pages write numbers: `:,` groups thousands, `MiB` is bytes in MiB, `Δ` a loss difference."""
    if spec == "MiB":
        return f"{value / 2**20:,.0f}"
    if spec == "Δ":
        return "0" if value == 0 else f"{value:.1e}"
    return format(value, spec)


def _normal(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("**", ""))


def _page(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def _run_row(run: dict) -> list[str]:
    return [_fmt(run["precompute_seconds"], ".1f"), _fmt(run["train_seconds"], ".1f"),
            _fmt(run["process_seconds"], ".1f"), _fmt(run["samples_per_second"], ".2f"),
            _fmt(run["samples_per_second_vs_best_trl"], ".2f"), _fmt(run["tokens_per_second"], ".0f"),
            _fmt(run["peak_memory_bytes"], "MiB"), _fmt(run["peak_memory_vs_best_trl"], ".2f"),
            _fmt(run["loss_max_abs_diff_vs_best_trl"], "Δ"), _fmt(run["contention"]["other_cpu_fraction"], ".0%")]


def _run_tables(page: str) -> list[tuple[str, list[list[str]]]]:
    """(result file, rows) of every table that follows a `<!-- result: ... -->` marker."""
    lines = page.splitlines()
    tables = []
    for index, line in enumerate(lines):
        marker = re.fullmatch(r"<!-- result: benchmarks/([\w.-]+\.json) -->", line.strip())
        if not marker:
            continue
        start = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("|"))
        rows = []
        for row in lines[start + 2:]:
            if not row.startswith("|"):
                break
            rows.append([cell.strip().replace("**", "") for cell in re.split(r"(?<!\\)\|", row)[1:-1]])
        tables.append((marker.group(1), rows))
    return tables


def _stored() -> list[Path]:
    return sorted(RESULTS.glob("*.json"))


@pytest.mark.parametrize("path", _stored(), ids=lambda p: p.name)
def test_each_stored_result_names_its_command_code_machine_and_versions(path):
    record = json.loads(path.read_text(encoding="utf-8"))
    script = f"benchmarks/{record['benchmark']}.py"
    assert (ROOT / script).is_file(), script
    assert record["command"].startswith(f"python {script}"), record["command"]
    assert f"--json docs/benchmarks/{path.name}" in record["command"], "written by the command it names"
    assert re.fullmatch(r"[0-9a-f]{40}", record["git"]["commit"] or ""), record["git"]
    assert isinstance(record["git"]["dirty"], bool) and isinstance(record["git"]["modified"], list)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", record["started"])
    machine = record["machine"]
    assert machine["cpu"] and machine["cpu_cores"] >= 1 and machine["memory_gib"] > 0 and "gpu" in machine
    for name in ("python", "torch", "transformers", "trl", "datasets"):
        assert record["versions"][name], name
    assert len(record["load_average"]["start"]) == 3 and len(record["load_average"]["end"]) == 3
    assert record["settings"] and record["runs"] and record["headline"]


def test_every_stored_result_is_quoted_and_every_quoted_result_is_stored():
    pages = _page("docs/performance.md") + _page("docs/datasets.md") + _page("docs/datasets/hh-rlhf.md")
    linked = set(re.findall(r"benchmarks/([\w.-]+\.json)", pages))
    assert linked == {path.name for path in _stored()}, "docs/benchmarks/ and the links to it differ"


def test_run_tables_match_their_stored_results():
    tables = _run_tables(_page("docs/performance.md"))
    assert {name for name, _ in tables} == {SHIPPED, HARMLESS, MODEL_50M}
    for name, rows in tables:
        runs = _result(name)["runs"]
        assert [RUN_LABELS[row[0]] for row in rows] == list(runs), f"{name}: the table's runs are the stored runs"
        for row in rows:
            assert row[1:] == _run_row(runs[RUN_LABELS[row[0]]]), f"{name}, row {row[0]!r}"


def test_quoted_figures_match_their_stored_results():
    for page, text, keys in FIGURES:
        values = {slot: _fmt(_key(_result(file), path), spec) for slot, (file, path, spec) in keys.items()}
        expected = _normal(text.format(**values))
        assert expected in _normal(_page(page)), f"{page}: expected {expected!r} (from the stored results)"


def test_no_ratio_in_the_measured_section_goes_unchecked():
    page = _page("docs/performance.md")
    section = page[page.index("## Measured"):page.index("## Where we are not ahead")]
    section = "\n".join(line for line in section.splitlines() if not line.startswith("|"))  # tables: checked above
    text = _normal(section)
    for _, template, keys in (f for f in FIGURES if f[0] == "docs/performance.md"):
        values = {slot: _fmt(_key(_result(file), path), spec) for slot, (file, path, spec) in keys.items()}
        text = text.replace(_normal(template.format(**values)), " ")
    text = re.sub(r"≥ \d+(\.\d+)?×", " ", text)  # targets, not measurements
    assert not re.findall(r"\d+(?:\.\d+)?×", text), "a ratio on the page that no stored result backs"


def test_the_auto_chunk_example_is_what_the_code_computes():
    from aligntune.modeling.lm_head import resolve_chunk_size

    match = re.search(r"([\d,]+) positions per chunk for a ([\d,]+)-token vocabulary", _page("docs/performance.md"))
    positions, vocab = (int(group.replace(",", "")) for group in match.groups())
    assert resolve_chunk_size("auto", 10**6, vocab) == positions
