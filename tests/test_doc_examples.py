"""Every code block in the documentation runs in CI, or says in the page why it does not.

The pages: README.md, aligntune_core/README.md, plugins/*/README.md and docs/**/*.md. The convention (also in
docs/development.md, "Code blocks in the documentation"):

- ```text fences are output (what a command prints, a report, a formula): never run.
- ```python, ```yaml, ```bash, ```toml and ```json blocks are run by this test, as written, with the stand-ins below
  (the tiny model for hub models, local copies of hub datasets, training capped at a few steps).
- A block that cannot run here says why, in an HTML comment on the line just before its fence (invisible on the
  site): `<!-- not run: needs a GPU and the Hub -->`. Needing a GPU, several processes or machines, the Hub, or
  installing packages (pip, nox) are reasons; a fragment (`create_rl_trainer(..., loss_type="dpop")`) is one too.
- Indented (unfenced) code blocks are not allowed: they cannot carry a language.

`test_every_block_is_run_or_marked` enforces the convention; `test_doc_block_runs[<file>:<line>]` runs the blocks,
one process per page (python blocks of a page share a namespace: they build on each other), in a scratch directory
holding the files the pages name (`PAGE_FILES`). See tests/support/doc_page_runner.py for what each kind of block
does.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUNNER = Path(__file__).resolve().parent / "support" / "doc_page_runner.py"
PAGES = sorted({REPO / "README.md", REPO / "aligntune_core" / "README.md", *REPO.glob("plugins/*/README.md"),
                *(REPO / "docs").rglob("*.md")})

OUTPUT = {"text"}
RUN = {"python", "yaml", "bash", "toml", "json"}
NOT_RUN = re.compile(r"^<!--\s*not run:\s*(?P<reason>.*?)\s*-->$")
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)")
FILE_HEADER = re.compile(r"^#\s*(?P<name>[\w./-]+\.(?:py|ya?ml|toml))\b")  # `# run.yaml: ...`: the block is that file

# ---------------------------------------------------------------------------------------------------------------
# Stand-ins: what the pages name that needs a GPU or the network, and what runs instead. Applied at the API entry
# points (create_trainer_from_config, run_eval, load_preference_data) by the page runner; the page text is not edited.
# ---------------------------------------------------------------------------------------------------------------
# Hub models the pages name -> the tiny test model (a 2-layer Llama built by the `tiny_model` fixture), or the tiny
# sequence-classification model (`tiny_judge`) for a reward-model judge. A page naming another hub model fails
# (offline) until it is added here.
HUB_MODELS = {
    "Qwen/Qwen3-0.6B": "tiny_model",
    "Qwen/Qwen3-8B": "tiny_model",
    "unsloth/Llama-3.2-1B-Instruct-bnb-4bit": "tiny_model",
    "OpenAssistant/reward-model-deberta-v3-large-v2": "tiny_judge",
}


def hub_datasets(shared: Path, pairs: Path) -> dict:
    """Hub datasets the pages name -> options that read a local copy instead (only when the page gives no
    data_files): the real files from ../shared/data (hh-rlhf's test split is the one kept there; 16 pairs), or the
    test's own pairs for a dataset with no local copy."""
    return {
        "Anthropic/hh-rlhf": {"set": {"data_files": str(shared / "hh-rlhf"), "split": "test", "max_samples": 16}},
        "OpenAssistant/oasst1": {"set": {"data_files": str(shared / "oasst1" / "oasst1-validation-en.messages.jsonl"),
                                         "max_samples": 16}},
        "trl-lib/ultrafeedback_binarized": {"dataset_name": str(pairs), "set": {"data_files": None}},
    }


# Every training run: a few steps, fp32 on the CPU, no tracker, no intermediate checkpoints, short sequences.
TRAINING = {"max_steps": 2, "precision": "fp32", "report_to": "none", "save_steps": None, "max_seq_length": 256,
            "gradient_checkpointing": False, "load_in_4bit": False, "distributed": None, "num_processes": None,
            "launcher": None}
BACKENDS = {"unsloth": "trl"}  # Unsloth has its own environment (the nox unsloth session)

# Files the pages name, in each page's scratch directory. "pairs": the 64 arithmetic pairs of the `pairs_jsonl`
# fixture; "held-out": 16 other pairs; "hh-rlhf", "oasst1": the real data (symlinks into ../shared/data).
PAGE_FILES = {
    "my_pairs.jsonl": "pairs",
    "pairs.jsonl": "pairs",
    "data/pairs.jsonl": "pairs",
    "data/my_pairs.jsonl": "pairs",
    "my_held_out_pairs.jsonl": "held-out",
    "path/to/hh-rlhf": "hh-rlhf",
    "oasst1-validation-en.messages.jsonl": "oasst1",
    "data/oasst1-train.messages.jsonl.gz": "oasst1.gz",
}

# Code run in a page's process before its blocks: what the page assumes already exists (a finished run).
_TRAIN_RUN = """
from aligntune.core.backend_factory import create_rl_trainer as _create
_create(model_name="Qwen/Qwen3-0.6B", dataset_name="my_pairs.jsonl", output_dir={out!r}, use_lora={lora}).train()
del _create
"""
PAGE_SETUP = {
    "docs/evaluation.md": _TRAIN_RUN.format(out="output/qwen-dpo", lora=True),  # "a LoRA adapter on base_model"
    "docs/export.md": _TRAIN_RUN.format(out="output/run", lora=True),
}
# Code run after a page's blocks: what shows that the page's example does what it says.
PAGE_CHECK = {
    # The plugin example, installed (its pyproject.toml's entry points, as pip would record them): listed, passes
    # the loss contract, and trains.
    "docs/plugins/index.md": """
import subprocess, sys
from pathlib import Path
from aligntune.plugins import reset_registry
project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
entry_points = project["entry-points"]["aligntune"]
info = Path(f"{project['name'].replace('-', '_')}-{project['version']}.dist-info")
info.mkdir()
(info / "METADATA").write_text(f"Metadata-Version: 2.1\\nName: {project['name']}\\nVersion: {project['version']}\\n")
(info / "entry_points.txt").write_text("[aligntune]\\n" + "".join(f"{k} = {v}\\n" for k, v in entry_points.items()))
reset_registry()
listed = subprocess.run([sys.executable, "-m", "aligntune", "plugins", "list"], capture_output=True, text=True,
                        env={**__import__("os").environ, "PYTHONPATH": "."}, check=True).stdout
assert project["name"] in listed and "losses: slic" in listed, listed
from aligntune.testing import check_loss_contract
check_loss_contract("slic", params={"margin": 1.0})
from aligntune.core.backend_factory import create_rl_trainer
create_rl_trainer(model_name="Qwen/Qwen3-0.6B", dataset_name="my_pairs.jsonl", loss_type="slic",
                  loss_params={"margin": 2.0}, output_dir="output/slic").train()   # as the page says
""",
}
# Python packages a page's blocks need, by what they name (nox `all` has them all; elsewhere those pages skip).
# Every page needs the TRL backend: its blocks train, or build configs that resolve the default backend.
NEEDS = {
    "": "aligntune_backend_trl",
    "Anthropic/hh-rlhf": "aligntune_data_hh_rlhf",
    "OpenAssistant/oasst1": "aligntune_data_oasst1",
    "dpop": "aligntune_loss_dpop",
}


@dataclass(frozen=True)
class Block:
    path: str  # relative to the repository
    line: int  # of the opening fence, 1-based
    lang: str
    source: str
    reason: str | None  # the <!-- not run: ... --> reason

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"

    @property
    def file_name(self) -> str | None:
        match = FILE_HEADER.match(self.source)
        return match.group("name") if match else None

    def commands(self) -> list[list[str]]:
        """A bash block's commands (continuation lines joined, comments dropped)."""
        text = re.sub(r"\\\n", " ", self.source)
        commands = []
        for line in text.splitlines():
            argv: list[str] = []
            for word in shlex.split(line, comments=True) + ["&&"]:
                if word in ("&&", "||", ";", "|"):
                    commands += [argv] if argv else []
                    argv = []
                else:
                    argv.append(word)
        return commands


@cache
def blocks() -> tuple[Block, ...]:
    found = []
    for page in PAGES:
        if not page.is_file():
            continue
        lines = page.read_text(encoding="utf-8").splitlines()
        i = 0
        while i < len(lines):
            match = FENCE.match(lines[i])
            if not match:
                i += 1
                continue
            indent, fence = len(match.group("indent")), match.group("fence")
            end = next((j for j in range(i + 1, len(lines)) if lines[j].strip().startswith(fence)
                        and not lines[j].strip().strip(fence[0])), len(lines))
            body = "\n".join(line[indent:] if not line[:indent].strip() else line.lstrip() for line in lines[i + 1:end])
            previous = lines[i - 1].strip() if i else ""
            marker = NOT_RUN.match(previous)
            found.append(Block(str(page.relative_to(REPO)), i + 1, match.group("lang").lower(), body + "\n",
                               marker.group("reason") if marker else None))
            i = end + 1
    return tuple(found)


def indented_code_blocks() -> list[str]:
    """Places of indented (unfenced) code blocks: 4 spaces after a blank line, outside lists and fences."""
    places = []
    for page in PAGES:
        if not page.is_file():
            continue
        lines = page.read_text(encoding="utf-8").splitlines()
        in_fence, context = False, ""
        for number, line in enumerate(lines, 1):
            if FENCE.match(line):
                in_fence = not in_fence
                continue
            if in_fence or not line.strip():
                continue
            if line.startswith("    ") and lines[number - 2].strip() == "" and context == "paragraph":
                places.append(f"{page.relative_to(REPO)}:{number}")
            if not line.startswith(" "):
                context = "list" if re.match(r"([-*+]|\d+\.)\s", line) else "paragraph"
    return places


def problem(block: Block) -> str | None:
    """Why the block is neither run by this test nor marked as not run; None when it is one of them."""
    if block.reason is not None:
        return None if block.reason else "the not-run comment gives no reason"
    if block.lang in OUTPUT:
        return None
    if not block.lang:
        return "a fence without a language: ```text for output, else the code's language (```python, ```bash, ...)"
    if block.lang not in RUN:
        return f"```{block.lang} is neither run nor output (run: {sorted(RUN)}; output: ```text)"
    if block.lang == "bash":
        others = sorted({argv[0] for argv in block.commands() if argv[0] != "aligntune"})
        if others:
            return f"runs {', '.join(others)}: only aligntune commands are run here"
    if block.lang == "python" and not block.file_name:
        import ast

        try:
            tree = ast.parse(block.source)
        except SyntaxError as exc:
            return f"not valid Python ({exc.msg}, line {block.line + (exc.lineno or 0)})"
        if any(isinstance(node, ast.Constant) and node.value is Ellipsis for node in ast.walk(tree)):
            return "a fragment (`...` stands for something): make it complete, or mark it not run"
    return None


def runnable() -> list[Block]:
    return [block for block in blocks() if block.reason is None and block.lang in RUN and problem(block) is None]


MARK = "mark it with `<!-- not run: REASON -->` on the line before its fence"


def test_every_block_is_run_or_marked():
    problems = [f"{block.id}: {why}" for block in blocks() if (why := problem(block))]
    problems += [f"{place}: an indented code block; use a fence with a language" for place in indented_code_blocks()]
    assert not problems, f"code blocks neither run by this test nor marked ({MARK}):\n" + "\n".join(problems)


def test_the_collector_sees_the_pages():
    ids = {block.id.split(":")[0] for block in blocks()}
    assert {"README.md", "docs/getting-started.md", "docs/plugins/index.md"} <= ids
    assert len(runnable()) >= 20  # a parsing mistake must not make this test pass vacuously


# ---------------------------------------------------------------------------------------------------------------
# Running the pages.
# ---------------------------------------------------------------------------------------------------------------


def _missing_packages(path: str) -> list[str]:
    import importlib.util

    text = "\n".join(block.source for block in runnable() if block.path == path)
    text += PAGE_SETUP.get(path, "") + PAGE_CHECK.get(path, "")
    return sorted({module for needle, module in NEEDS.items()
                   if needle in text and importlib.util.find_spec(module) is None})


def _place_files(work: Path, shared: Path, pairs: Path) -> None:
    sources = {"pairs": pairs, "hh-rlhf": shared / "hh-rlhf", "oasst1": shared / "oasst1" /
               "oasst1-validation-en.messages.jsonl"}
    for name, kind in PAGE_FILES.items():
        target = work / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if kind == "held-out":
            rows = [{"prompt": f"Q: what is {a} plus {b}? A:", "chosen": f" {a + b}", "rejected": f" {a + b + 2}"}
                    for a in range(8, 12) for b in range(8, 12)]
            target.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        elif kind == "oasst1.gz":
            target.write_bytes(gzip.compress(sources["oasst1"].read_bytes(), compresslevel=1))
        else:
            target.symlink_to(sources[kind])


@pytest.fixture(scope="module")
def page_results(tiny_model, tiny_judge, shared_data, pairs_jsonl, tmp_path_factory):
    """Runs a page's blocks once (on first request) and returns {block id: error or None}."""
    done: dict[str, dict[str, str | None]] = {}
    models = {"tiny_model": str(tiny_model), "tiny_judge": str(tiny_judge)}

    def run(path: str) -> dict[str, str | None]:
        if path in done:
            return done[path]
        work = tmp_path_factory.mktemp("page")
        _place_files(work, shared_data, pairs_jsonl)
        page_blocks = [block for block in runnable() if block.path == path]
        plan = {
            "blocks": [{"id": b.id, "path": b.path, "line": b.line, "lang": b.lang, "source": b.source,
                        "file_name": b.file_name, "commands": b.commands() if b.lang == "bash" else []}
                       for b in page_blocks],
            "stand_ins": {"models": {name: models[kind] for name, kind in HUB_MODELS.items()},
                          "datasets": hub_datasets(shared_data, pairs_jsonl), "training": TRAINING,
                          "backends": BACKENDS,
                          "base_config": {"model_name": str(tiny_model), "dataset_name": "my_pairs.jsonl"}},
            "setup": PAGE_SETUP.get(path, ""),
            "check": PAGE_CHECK.get(path, ""),
            "results": str(work / "results.jsonl"),
        }
        plan_file = work / "plan.json"
        plan_file.write_text(json.dumps(plan), encoding="utf-8")
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
               "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        proc = subprocess.run([sys.executable, str(RUNNER), str(plan_file)], cwd=work, capture_output=True,
                              text=True, timeout=900, env=env)
        results: dict[str, str | None] = {}
        if (work / "results.jsonl").is_file():
            for line in (work / "results.jsonl").read_text(encoding="utf-8").splitlines():
                record = json.loads(line)
                results[record["id"]] = record["error"]
        if proc.returncode != 0:
            results[f"{path}:check"] = f"the page's process exited {proc.returncode}:\n{proc.stderr[-4000:]}"
        for block in page_blocks:
            results.setdefault(block.id, f"no result (the process exited {proc.returncode}):\n{proc.stderr[-4000:]}")
        done[path] = results
        return results

    return run


@pytest.mark.slow
@pytest.mark.parametrize("block", runnable(), ids=lambda block: block.id)
def test_doc_block_runs(block, page_results):
    missing = _missing_packages(block.path)
    if missing:
        pytest.skip(f"{block.path} needs {', '.join(missing)} (installed in the nox `all` session)")
    error = page_results(block.path)[block.id]
    assert error is None, f"{block.id} ({block.lang}) fails:\n{error}"


CHECKED_PAGES = sorted({block.path for block in runnable()
                        if block.path in PAGE_CHECK or (block.lang == "toml" and "entry-points" in block.source)})


@pytest.mark.slow
@pytest.mark.parametrize("path", CHECKED_PAGES)
def test_doc_page_check(path, page_results):
    """A page's extra check (PAGE_CHECK) and its plugin entry points, after its blocks ran."""
    missing = _missing_packages(path)
    if missing:
        pytest.skip(f"{path} needs {', '.join(missing)} (installed in the nox `all` session)")
    error = page_results(path).get(f"{path}:check")
    assert error is None, error


def test_development_quick_recipe_installs_what_pytest_collects():
    """docs/development.md's editable-install recipe is not run (it installs packages), so check what it would do:
    plain `pytest` collects every plugin's tests (pyproject's testpaths), so the recipe installs every plugin whose
    tests need it, and what the nox `all` session adds for the tests (tensorboard); each path it names exists."""
    recipe = next(block for block in blocks()
                  if block.path == "docs/development.md" and "pip install -e" in block.source)
    words = [word for argv in recipe.commands() for word in argv]
    installed = {Path(words[i + 1]).resolve() for i, word in enumerate(words) if word == "-e"}
    assert all(path.is_dir() for path in installed), installed
    for plugin in sorted(REPO.glob("plugins/*/tests")):
        sources = "".join(path.read_text(encoding="utf-8") for path in plugin.glob("test_*.py"))
        if 'importorskip("unsloth"' in sources:
            continue  # the Unsloth backend's tests skip without Unsloth (its own environment: nox -s unsloth)
        assert plugin.parent.resolve() in installed, f"`pytest` collects {plugin.relative_to(REPO)}: install it"
    assert (REPO / "aligntune_core").resolve() in installed
    noxfile = (REPO / "noxfile.py").read_text(encoding="utf-8")
    for extra in re.findall(r'session\.install\("([\w-]+)"\)\s*#', noxfile):  # the all session's test extras
        assert extra in words, f"the nox sessions install {extra} for the tests; the recipe does not"
    assert "pytest" in words
