"""Shared test fixtures: tiny models built in-process, real data from ../shared/data, fake installed plugins."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

# Fake installed plugins (nothing is pip-installed), shipped for plugin authors' tests too; tests import it from here.
from aligntune.testing import write_fake_distribution  # noqa: F401

# Tests never reach the Hugging Face Hub: fail fast instead of waiting on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parent


@pytest.fixture(scope="session", autouse=True)
def _private_cache_dir(tmp_path_factory):
    """Reference log-prob caches written by tests go to a temporary directory, never the user's ~/.cache."""
    previous = os.environ.get("ALIGNTUNE_CACHE_DIR")
    os.environ["ALIGNTUNE_CACHE_DIR"] = str(tmp_path_factory.mktemp("aligntune-cache"))
    yield
    if previous is None:
        os.environ.pop("ALIGNTUNE_CACHE_DIR", None)
    else:
        os.environ["ALIGNTUNE_CACHE_DIR"] = previous


def shared_data_dir() -> Path | None:
    env = os.environ.get("ALIGNTUNE_TEST_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "data")
    for path in candidates:
        if path.is_dir():
            return path
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("real data not found: set ALIGNTUNE_TEST_DATA or put shared/data beside the repository")
    return path


ARITHMETIC = [
    {"prompt": f"Q: what is {a} plus {b}? A:", "chosen": f" {a + b}", "rejected": f" {a + b + 1 + (a * b) % 3}"}
    for a in range(8)
    for b in range(8)
]


@pytest.fixture(scope="session")
def pairs_jsonl(tmp_path_factory) -> Path:
    """64 standard-format pairs as a JSON Lines file."""
    path = tmp_path_factory.mktemp("data") / "pairs.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in ARITHMETIC), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A 2-layer, hidden-64 Llama with a byte-level BPE tokenizer trained on the test corpus."""
    from aligntune.demo.tiny_model import build_tiny_llama

    corpus = [row["prompt"] + row["chosen"] + row["rejected"] for row in ARITHMETIC]
    corpus += ["Human: hello there\n\nAssistant: hi, how can I help?", "The quick brown fox jumps over the lazy dog."]
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), corpus, vocab_size=400, seed=0)


@pytest.fixture(scope="session")
def tiny_policy(tiny_model, tmp_path_factory) -> Path:
    """The tiny model with perturbed weights: a 'trained' policy whose log-probs differ from the reference's."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    directory = tmp_path_factory.mktemp("tiny-policy")
    model.save_pretrained(directory)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_judge(tiny_model, tmp_path_factory) -> Path:
    """A tiny Llama sequence-classification model (one label) to serve as a reward-model judge."""
    import torch
    from transformers import AutoConfig, AutoTokenizer, LlamaForSequenceClassification

    config = AutoConfig.from_pretrained(tiny_model)
    config.num_labels = 1
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(7)
    model = LlamaForSequenceClassification(config)
    directory = tmp_path_factory.mktemp("tiny-judge")
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def gradients(model) -> dict:
    """A copy of every parameter's gradient, by name."""
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def assert_same_gradients(model, expected: dict, rtol: float = 1e-5) -> None:
    """Each parameter's gradient equals `expected`'s to `rtol` of its largest entry (float32 arithmetic against a
    computation in another order or precision)."""
    for name, p in model.named_parameters():
        scale = expected[name].abs().max().item()
        assert (p.grad - expected[name]).abs().max().item() <= rtol * scale + 1e-7, name
