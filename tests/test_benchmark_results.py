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
MODEL_58M = "dpo_speed-50m.json"
PREPARATION = "data_preparation.json"
CONVERSION = "hh_rlhf_conversion.json"
LARGE_FILE = "large_file_load.json"
STORED = (SHIPPED, HARMLESS, MODEL_58M, PREPARATION, CONVERSION, LARGE_FILE)

PACKED = ("aligntune-packed", "aligntune-precompute", "aligntune-precompute-warm", "aligntune")
TRL_RUNS = ("trl", "trl-precompute", "trl-precompute-warm")
ALIGNTUNE_RUNS = ("aligntune-unshared", "aligntune-shared", *PACKED)


def _increments(record: dict, names) -> list[int]:
    """Peak memory above what the process held when train() started, for the runs `names`."""
    return [record["runs"][n]["peak_memory_bytes"] - record["runs"][n]["memory_at_train_start_bytes"] for n in names]


HH_RLHF = "docs/datasets/hh-rlhf.md"
PERFORMANCE = "docs/performance.md"

# (page, text with {placeholders}, {placeholder: (result file, key, format)}). A key is a dotted path
# (`runs.aligntune.median_seconds`), "a - b" or "a / b" of two paths, or a function of the whole result.
FIGURES: list[tuple[str, str, dict[str, tuple[str, str, str]]]] = [
    (HH_RLHF, "median of {n}: {ours} s for aligntune's conversion of all {read} pairs",
     {"n": (CONVERSION, "settings.repeats", "d"), "ours": (CONVERSION, "runs.aligntune.median_seconds", ".2f"),
      "read": (CONVERSION, "runs.aligntune.read", ",")}),
    (HH_RLHF, "against {trl} s for TRL's preparation of the same files",
     {"trl": (CONVERSION, "runs.trl.median_seconds", ".2f")}),
    (HH_RLHF, "{ratio}× faster, and lossless (TRL's common-prefix prompt cuts into a response in {cut} pairs)",
     {"ratio": (CONVERSION, "headline.speedup_vs_trl", ".2f"),
      "cut": (CONVERSION, "runs.trl.prompt_cut_into_response", ",")}),
    *((HH_RLHF, f"| {subset} | {{read}} | {{kept}} |",
       {"read": (CONVERSION, f"runs.aligntune.subsets.{subset}.read", ","),
        "kept": (CONVERSION, f"runs.aligntune.subsets.{subset}.kept", ",")})
      for subset in ("harmless-base", "helpful-base", "helpful-online", "helpful-rejection-sampled")),
    (HH_RLHF, "| all four | {read} | {kept} | {dropped} |",
     {"read": (CONVERSION, "runs.aligntune.read", ","), "kept": (CONVERSION, "runs.aligntune.kept", ","),
      "dropped": (CONVERSION, "runs.aligntune.read - runs.aligntune.kept", ",")}),
    *((HH_RLHF, f"| `{reason}` | {{n}} |", {"n": (CONVERSION, f"runs.aligntune.dropped.{reason}", ",")})
      for reason in ("identical_responses", "prompt_mismatch", "empty_rejected", "empty_chosen",
                     "response_contains_human_turn")),
    # Loading a large file (synthetic data the benchmark writes).
    ("docs/datasets.md", "a {size} MB JSONL of {rows} pairs loads in {seconds} s with a peak RSS of {peak} GB, "
                         "{ratio}x the file above the imports, where the previous list-of-rows approach needed "
                         "{old}x (`python benchmarks/large_file_load.py --baseline`",
     {"size": (LARGE_FILE, lambda r: r["settings"]["file_bytes"] / 1e6, ",.0f"),
      "rows": (LARGE_FILE, "runs.aligntune.rows", ","), "seconds": (LARGE_FILE, "runs.aligntune.seconds", ".1f"),
      "peak": (LARGE_FILE, lambda r: r["runs"]["aligntune"]["peak_rss_bytes"] / 1e9, ".2f"),
      "ratio": (LARGE_FILE, "runs.aligntune.peak_rss_over_file", ".2f"),
      "old": (LARGE_FILE, "runs.list_of_dicts.peak_rss_over_file", ".2f")}),
    # The device every figure on the page is from: each stored result must name it.
    *((PERFORMANCE, "{cores} cores ({cpu}), {memory} GiB of memory, {gpu}, Python {python}, torch {torch} (CPU), "
                    "transformers {transformers}, TRL {trl}, `datasets` {datasets}",
       {"cores": (name, "machine.cpu_cores", "d"), "cpu": (name, "machine.cpu", ""),
        "memory": (name, "machine.memory_gib", ".1f"),
        "gpu": (name, lambda r: r["machine"]["gpu"] or "no GPU", ""),
        "python": (name, lambda r: r["versions"]["python"].rsplit(".", 1)[0], ""),
        "torch": (name, lambda r: r["versions"]["torch"].split("+")[0], ""),
        "transformers": (name, "versions.transformers", ""), "trl": (name, "versions.trl", ""),
        "datasets": (name, "versions.datasets", "")})
      for name in STORED),
    # README: the headline, aligntune's defaults against the faster TRL run.
    ("README.md", "train {ratio}× faster than the faster of TRL's `DPOTrainer` runs (with and without precomputed "
                  "reference log-probs) on real hh-rlhf pairs, at equal per-step losses and {memory}× the memory",
     {"ratio": (SHIPPED, "headline.speedup_vs_trl", ".2f"),
      "memory": (SHIPPED, "headline.memory_vs_trl", ".2f")}),
    ("README.md", "[docs/benchmarks/{file}](docs/benchmarks/{file})", {"file": (SHIPPED, lambda r: SHIPPED, "")}),
    # Shipped shape.
    (PERFORMANCE, "{params} M parameters, 4,096-token BPE vocabulary trained on the same text), batch {batch}, "
                  "`max_length` {length}, fp32, 1 epoch ({steps} steps)",
     {"params": (SHIPPED, lambda r: r["settings"]["parameters"] / 1e6, ".1f"),
      "batch": (SHIPPED, "settings.batch_size", "d"), "length": (SHIPPED, "settings.max_length", "d"),
      "steps": (SHIPPED, "settings.steps", "d")}),
    (PERFORMANCE, "Other work took {low}–{high} of the CPU during these runs",
     {"low": (SHIPPED, lambda r: 100 * min(run["contention"]["other_cpu_fraction"] for run in r["runs"].values()),
              ".0f"),
      "high": (SHIPPED, lambda r: max(run["contention"]["other_cpu_fraction"] for run in r["runs"].values()), ".0%")}),
    (PERFORMANCE, "the TRL baseline ({baseline}) less than the aligntune runs ({low}–{high})",
     {"baseline": (SHIPPED, "runs.trl.contention.other_cpu_fraction", ".0%"),
      "low": (SHIPPED, lambda r: 100 * min(r["runs"][n]["contention"]["other_cpu_fraction"] for n in ALIGNTUNE_RUNS),
              ".0f"),
      "high": (SHIPPED, lambda r: max(r["runs"][n]["contention"]["other_cpu_fraction"] for n in ALIGNTUNE_RUNS),
               ".0%")}),
    (PERFORMANCE, "Memory does not depend on the load: {low}–{high}× for every packed aligntune run",
     {"low": (SHIPPED, lambda r: min(r["runs"][n]["peak_memory_vs_best_trl"] for n in PACKED), ".2f"),
      "high": (SHIPPED, lambda r: max(r["runs"][n]["peak_memory_vs_best_trl"] for n in PACKED), ".2f")}),
    (PERFORMANCE, "gives {cold} vs {per_step} samples/s here ({ratio}×)",
     {"cold": (SHIPPED, "runs.aligntune-precompute.samples_per_second", ".2f"),
      "per_step": (SHIPPED, "runs.aligntune-packed.samples_per_second", ".2f"),
      "ratio": (SHIPPED, "runs.aligntune-precompute.samples_per_second / runs.aligntune-packed.samples_per_second",
                ".2f")}),
    (PERFORMANCE, "the process already holds there (`memory_at_train_start_bytes` in the result): {low}–{high} MiB",
     {"low": (SHIPPED, lambda r: min(run["memory_at_train_start_bytes"] for run in r["runs"].values()), "MiB"),
      "high": (SHIPPED, lambda r: max(run["memory_at_train_start_bytes"] for run in r["runs"].values()), "MiB")}),
    (PERFORMANCE, "aligntune's packed runs add {low}–{high} MiB and TRL's runs {trl_low}–{trl_high} MiB",
     {"low": (SHIPPED, lambda r: min(_increments(r, PACKED)), "MiB,"),
      "high": (SHIPPED, lambda r: max(_increments(r, PACKED)), "MiB,"),
      "trl_low": (SHIPPED, lambda r: min(_increments(r, TRL_RUNS)), "MiB,"),
      "trl_high": (SHIPPED, lambda r: max(_increments(r, TRL_RUNS)), "MiB,")}),
    (PERFORMANCE, "aligntune with its defaults on a CPU (sharing + packing + precompute, cold cache): {ratio}× the "
                  "samples/s of the better TRL row ({baseline} here), {memory}× its peak memory, per-step losses "
                  "within {loss} of TRL's. Whole process: {ours} s against {trl} s ({process}×)",
     {"ratio": (SHIPPED, "headline.speedup_vs_trl", ".2f"),
      "baseline": (SHIPPED, lambda r: {"trl": "plain TRL", "trl-precompute": "TRL with precompute"}.get(
          r["headline"]["baseline"], r["headline"]["baseline"]), ""),
      "memory": (SHIPPED, "headline.memory_vs_trl", ".2f"),
      "loss": (SHIPPED, "runs.aligntune.loss_max_abs_diff_vs_best_trl", "Δ"),
      "ours": (SHIPPED, "runs.aligntune.process_seconds", ".1f"),
      "trl": (SHIPPED, lambda r: r["runs"][r["headline"]["process_baseline"]]["process_seconds"], ".1f"),
      "process": (SHIPPED, "headline.process_speedup_vs_trl", ".2f")}),
    (PERFORMANCE, "TRL's reference pass takes {low}–{high} s", {
        "low": (SHIPPED, lambda r: min(r["runs"][n]["precompute_seconds"] for n in TRL_RUNS[1:]), ".1f"),
        "high": (SHIPPED, lambda r: max(r["runs"][n]["precompute_seconds"] for n in TRL_RUNS[1:]), ".1f")}),
    (PERFORMANCE, "aligntune's takes {ours} s",
     {"ours": (SHIPPED, "runs.aligntune.precompute_seconds", ".1f")}),
    (PERFORMANCE, "| shipped | ≥ 3.5× the better TRL, memory ≤ 0.5× | {ratio}× and {memory}× with the "
                  "defaults; memory {low}–{high}× across the packed runs",
     {"ratio": (SHIPPED, "headline.speedup_vs_trl", ".2f"),
      "memory": (SHIPPED, "headline.memory_vs_trl", ".2f"),
      "low": (SHIPPED, lambda r: min(r["runs"][n]["peak_memory_vs_best_trl"] for n in PACKED), ".2f"),
      "high": (SHIPPED, lambda r: max(r["runs"][n]["peak_memory_vs_best_trl"] for n in PACKED), ".2f")}),
    # Data preparation and conversion.
    (PERFORMANCE, "| plain TRL: `datasets` JSON + `DPOTrainer` (prompt by common prefix, row-wise tokenization) "
                  "| {s} |",
     {"s": (PREPARATION, "runs.trl.median_seconds", ".2f")}),
    (PERFORMANCE, "| aligntune: hh-rlhf plugin's lossless split + batched tokenization | {s} |",
     {"s": (PREPARATION, "runs.aligntune.median_seconds", ".2f")}),
    (PERFORMANCE, "| | seconds (median of {n}) |", {"n": (PREPARATION, "settings.repeats", "d")}),
    (PERFORMANCE, "`speedup_vs_trl: {r}`, above the 2× target (other processes took {busy} of the CPU during the "
                  "run; the repeats range from {tlo} to {thi} s for TRL and {lo} to {hi} s for aligntune",
     {"r": (PREPARATION, "headline.speedup_vs_trl", ".2f"),
      "busy": (PREPARATION, "contention.other_cpu_fraction", ".0%"),
      "tlo": (PREPARATION, lambda r: min(r["runs"]["trl"]["seconds"]), ".2f"),
      "thi": (PREPARATION, lambda r: max(r["runs"]["trl"]["seconds"]), ".2f"),
      "lo": (PREPARATION, lambda r: min(r["runs"]["aligntune"]["seconds"]), ".2f"),
      "hi": (PREPARATION, lambda r: max(r["runs"]["aligntune"]["seconds"]), ".2f")}),
    (PERFORMANCE, "cuts into the replies of {cut} pairs and keeps the unusable ones; aligntune keeps {kept} lossless "
                  "pairs; then both drop pairs whose prompt fills `max_length` ({length}), leaving {trl} rows for TRL "
                  "and {ours} for aligntune",
     {"cut": (CONVERSION, "runs.trl.prompt_cut_into_response", ","), "kept": (CONVERSION, "runs.aligntune.kept", ","),
      "length": (PREPARATION, "settings.max_length", ","),
      "trl": (PREPARATION, "runs.trl.prepared_pairs", ","),
      "ours": (PREPARATION, "runs.aligntune.prepared_pairs", ",")}),
    (PERFORMANCE, "(no tokenization): `python benchmarks/hh_rlhf_conversion.py` "
                  "([`hh_rlhf_conversion.json`](benchmarks/hh_rlhf_conversion.json)), {ours} s vs {trl} s.",
     {"ours": (CONVERSION, "runs.aligntune.median_seconds", ".2f"),
      "trl": (CONVERSION, "runs.trl.median_seconds", ".2f")}),
    # Long prompts (harmless-base).
    (PERFORMANCE, "`speedup_vs_trl: {ratio}` against plain TRL (the faster TRL row), at {memory}× its peak memory",
     {"ratio": (HARMLESS, "headline.speedup_vs_trl", ".2f"), "memory": (HARMLESS, "headline.memory_vs_trl", ".2f")}),
    # 58.1 M parameters, 32k vocabulary.
    (PERFORMANCE, "aligntune's defaults at {plain}× plain TRL (the faster TRL row) and {precompute}× TRL with "
                  "precompute, at {memory}× the memory ({process}× whole process)",
     {"plain": (MODEL_58M, "runs.aligntune.samples_per_second / runs.trl.samples_per_second", ".2f"),
      "precompute": (MODEL_58M, "runs.aligntune.samples_per_second / runs.trl-precompute.samples_per_second", ".2f"),
      "memory": (MODEL_58M, "headline.memory_vs_trl", ".2f"),
      "process": (MODEL_58M, "headline.process_speedup_vs_trl", ".2f")}),
    (PERFORMANCE, "| 58.1 M / 32k vocabulary | ≥ 5× plain TRL, ≥ 3.5× TRL with precompute, memory ≤ 0.5× | {plain}×, "
                  "{precompute}×, {memory}× |",
     {"plain": (MODEL_58M, "runs.aligntune.samples_per_second / runs.trl.samples_per_second", ".2f"),
      "precompute": (MODEL_58M, "runs.aligntune.samples_per_second / runs.trl-precompute.samples_per_second", ".2f"),
      "memory": (MODEL_58M, "headline.memory_vs_trl", ".2f")}),
    (PERFORMANCE, "and {ours} vs {packed}\non the 58.1 M shape ({ratio}×)",
     {"ours": (MODEL_58M, "runs.aligntune.samples_per_second", ".2f"),
      "packed": (MODEL_58M, "runs.aligntune-packed.samples_per_second", ".2f"),
      "ratio": (MODEL_58M, "runs.aligntune.samples_per_second / runs.aligntune-packed.samples_per_second", ".2f")}),
    (PERFORMANCE, "{ours} vs {packed} on harmless-base ({ratio}×)",
     {"ours": (HARMLESS, "runs.aligntune.samples_per_second", ".2f"),
      "packed": (HARMLESS, "runs.aligntune-packed.samples_per_second", ".2f"),
      "ratio": (HARMLESS, "runs.aligntune.samples_per_second / runs.aligntune-packed.samples_per_second", ".2f")}),
    (PERFORMANCE, "| long prompts (harmless-base) | ≥ 3×, memory ≤ 0.5× | {ratio}×, {memory}× |",
     {"ratio": (HARMLESS, "headline.speedup_vs_trl", ".2f"), "memory": (HARMLESS, "headline.memory_vs_trl", ".2f")}),
    (PERFORMANCE, "the reference pass is a read of the disk cache ({warm} s here)",
     {"warm": (SHIPPED, "runs.aligntune-precompute-warm.precompute_seconds", ".1f")}),
]


def _result(name: str) -> dict:
    return json.loads((RESULTS / name).read_text(encoding="utf-8"))


def _key(record: dict, path):
    if callable(path):
        return path(record)
    if " - " in path:
        first, second = path.split(" - ")
        return _key(record, first) - _key(record, second)
    if " / " in path:
        first, second = path.split(" / ")
        return _key(record, first) / _key(record, second)
    value = record
    for part in path.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def _fmt(value, spec: str) -> str:
    """Formats as the pages write numbers: `,` groups thousands, `MiB` is bytes in MiB, `Δ` a loss difference."""
    if spec == "MiB":
        return f"{value / 2**20:.0f}"
    if spec == "MiB,":
        return f"{value / 2**20:,.0f}"
    if spec == "":
        return str(value)
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
    linked = set(re.findall(r"\]\((?:\.\./)?benchmarks/([\w.-]+\.json)\)", pages))
    assert linked == {path.name for path in _stored()}, "docs/benchmarks/ and the links to it differ"
    assert set(STORED) == {path.name for path in _stored()}


@pytest.mark.parametrize("name", STORED)
def test_the_performance_page_gives_each_stored_command(name):
    assert _result(name)["command"] in _page(PERFORMANCE), f"{name}: its command is not on docs/performance.md"


def test_run_tables_match_their_stored_results():
    tables = _run_tables(_page("docs/performance.md"))
    assert {name for name, _ in tables} == {name for name in STORED if name.startswith("dpo_speed")}
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
    """Outside the checked tables and figures, a ratio (`N×`) may only stand under a heading or in a paragraph that
    says it is "not stored" (an earlier run), or be a target (`≥ N×`)."""
    page = _page(PERFORMANCE)
    section = page[page.index("## Measured"):page.index("## Where we are not ahead")]
    kept = []
    for part in re.split(r"\n(?=#+ )", section):
        heading, _, body = part.partition("\n")
        if "not stored" in heading:
            continue
        for block in re.split(r"\n\s*\n", body):
            if block.lstrip().startswith("<!-- result:"):
                continue  # a run table, checked row by row against its file
            if block.lstrip().startswith("|"):
                kept.extend(line for line in block.splitlines() if "not stored" not in line)
            elif "not stored" not in block:
                kept.append(block)
    text = _normal(" ".join([*kept]))
    for page_name, template, keys in FIGURES:
        if page_name == PERFORMANCE:
            values = {slot: _fmt(_key(_result(file), path), spec) for slot, (file, path, spec) in keys.items()}
            text = text.replace(_normal(template.format(**values)), " ")
    text = re.sub(r"≥ \d+(\.\d+)?×", " ", text)  # targets, not measurements
    unbacked = re.findall(r"[^\s]*\d+(?:\.\d+)?×[^\s]*", text)
    assert not unbacked, f"ratios on the page that no stored result backs: {unbacked}"


def test_the_auto_chunk_example_is_what_the_code_computes():
    from aligntune.modeling.lm_head import resolve_chunk_size

    match = re.search(r"([\d,]+) positions per chunk for a ([\d,]+)-token vocabulary", _page("docs/performance.md"))
    positions, vocab = (int(group.replace(",", "")) for group in match.groups())
    assert resolve_chunk_size("auto", 10**6, vocab) == positions
