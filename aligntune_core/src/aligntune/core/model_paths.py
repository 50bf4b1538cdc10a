"""Checking a local model directory before a library tries to load it, so a mistake gets a message that points the
right way ("no such directory", "no tokenizer files") instead of "Repo id must be in the form..." or "install
sentencepiece".

Hub ids (`Qwen/Qwen3-0.6B`) are left to the loader; anything that looks like a path is checked here.
"""

from __future__ import annotations

from pathlib import Path

from aligntune.errors import ConfigError

RUN_FILE = "aligntune_run.json"
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "adapter_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "spiece.model")


def resolved_path(name: str) -> str:
    """A local path made absolute (so the same model is recognised from any working directory); a hub id as is."""
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


def looks_local(name: str) -> bool:
    """A path rather than a hub id: it exists, starts like a path, or has more than one `/` (hub ids have one)."""
    return (Path(name).expanduser().exists() or name.startswith((".", "/", "~")) or name.count("/") > 1
            or "\\" in name or name.endswith("/"))


def _weights(path: Path) -> list[Path]:
    return sorted(p for pattern in WEIGHT_PATTERNS for p in path.glob(pattern) if p.is_file())


def _check_safetensors(files: list[Path]) -> None:
    from safetensors import safe_open

    for file in files:
        if file.suffix != ".safetensors":
            continue
        try:
            with safe_open(str(file), "pt"):
                pass
        except Exception as exc:  # safetensors raises its own error type for every malformed file
            raise ConfigError(
                f"{file}: the weights cannot be read ({exc}); the file is probably cut short (an interrupted "
                "download, copy or save). Copy or save it again."
            ) from None


def check_model_dir(name: str, *, option: str, need_tokenizer: bool = True, adapter_ok: bool = False) -> None:
    """Raise a `ConfigError` naming `option` when the local model directory `name` cannot be a model."""
    if not looks_local(name):
        return
    path = Path(name).expanduser()
    if not path.exists():
        raise ConfigError(
            f"{option}={name!r}: no such directory. Give a local model directory (config.json, weights and "
            "tokenizer files) or a Hugging Face Hub id such as 'Qwen/Qwen3-0.6B'."
        )
    if not path.is_dir():
        raise ConfigError(f"{option}={name!r} is a file; a model is a directory with config.json, weights and "
                          "tokenizer files")
    is_adapter = adapter_ok and (path / "adapter_config.json").is_file()
    if not is_adapter and not (path / "config.json").is_file():
        if (path / RUN_FILE).is_file():
            hint = (f" It holds an aligntune run record but no model: that run did not finish (see {path / RUN_FILE}"
                    "); evaluate one of its checkpoint-N folders, or finish it with `aligntune train ... --resume`.")
        elif not any(path.iterdir()):
            hint = " The directory is empty."
        else:
            hint = " Is it the right directory?"
        raise ConfigError(f"{option}={name!r}: no config.json in {path}, so it is not a model directory.{hint}")
    weights = _weights(path)
    if not weights:
        raise ConfigError(
            f"{option}={name!r}: no weights in {path} (expected model.safetensors, model-0000x-of-0000y.safetensors"
            f"{', adapter_model.safetensors' if is_adapter else ''} or pytorch_model.bin)"
        )
    _check_safetensors(weights)
    if need_tokenizer and not any((path / file).is_file() for file in TOKENIZER_FILES):
        raise ConfigError(
            f"{option}={name!r}: no tokenizer files in {path} (tokenizer.json, tokenizer_config.json, ...). Save the "
            "tokenizer next to the model: tokenizer.save_pretrained(directory)."
        )
