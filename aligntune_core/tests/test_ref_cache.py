"""The on-disk reference log-prob cache uses only entries it wrote itself, and never writes through a link."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch
from aligntune.modeling import ref_cache
from structlog.testing import capture_logs

KEY = ref_cache.cache_key(model="m", data="d", settings={"max_length": 64})
CHOSEN = torch.tensor([-12.5, -3.25, -40.0])
REJECTED = torch.tensor([-13.0, -7.5, -41.125])
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX permissions and links")


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _save(directory: Path, key: str = KEY, chosen: torch.Tensor = CHOSEN, rejected: torch.Tensor = REJECTED) -> Path:
    return ref_cache.save(directory, key, chosen, rejected, {"model": "tiny", "pairs": len(chosen)})


def _load_rejected(directory: Path, key: str = KEY) -> dict:
    """Load, expect a rejection, and return its single warning."""
    with capture_logs() as logs:
        assert ref_cache.load(directory, key) is None
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert len(warnings) == 1, logs
    assert warnings[0]["event"] == "ignoring reference log-prob cache entry"
    return warnings[0]


def test_round_trip(tmp_path):
    cache = tmp_path / "cache"
    path = _save(cache)
    assert path == cache / f"{KEY}.pt"
    with capture_logs() as logs:
        assert ref_cache.load(cache, KEY) == (CHOSEN.tolist(), REJECTED.tolist())
    assert logs == []
    metadata = json.loads((cache / f"{KEY}.json").read_text())
    assert metadata["key"] == KEY and metadata["meta"] == {"model": "tiny", "pairs": 3}
    assert metadata["checksum"]["algorithm"] == "blake2b-256"
    assert metadata["tensors"]["chosen"] == {"dtype": "torch.float32", "shape": [3]}
    assert sorted(p.name for p in cache.iterdir()) == [f"{KEY}.json", f"{KEY}.pt"]  # no temporary file left


def test_a_missing_entry_is_a_silent_miss(tmp_path):
    with capture_logs() as logs:
        assert ref_cache.load(tmp_path / "nowhere", KEY) is None
        assert ref_cache.load(tmp_path, KEY) is None
    assert logs == []


def test_a_planted_tensor_file_with_a_stale_checksum_is_rejected_then_overwritten(tmp_path):
    cache = tmp_path / "cache"
    path = _save(cache)
    # Well-formed, same shapes and dtype, wrong values (the loss would silently be ~10 instead of ~0.69).
    torch.save({"chosen": CHOSEN + 20.0, "rejected": REJECTED - 20.0}, path)
    warning = _load_rejected(cache)
    assert warning["path"] == str(path) and "checksum mismatch" in warning["reason"]
    _save(cache)  # what the trainer does after the miss
    assert ref_cache.load(cache, KEY) == (CHOSEN.tolist(), REJECTED.tolist())


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_corrupt_tensor_file_is_rejected(tmp_path, damage):
    path = _save(tmp_path)
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"not a tensor file", "empty": b""}[damage])
    warning = _load_rejected(tmp_path)
    assert warning["path"] == str(path) and "not a readable tensor file" in warning["reason"]


@pytest.mark.parametrize(("damage", "reason"), [
    ("missing", "file is missing"),
    ("not json", "not valid JSON"),
    ("no checksum", "no blake2b-256 checksum"),
    ("other key", "metadata is for key"),
    ("wrong shape", "metadata records"),
])
def test_bad_metadata_is_rejected(tmp_path, damage, reason):
    _save(tmp_path)
    meta_path = tmp_path / f"{KEY}.json"
    metadata = json.loads(meta_path.read_text())
    if damage == "missing":
        meta_path.unlink()
    elif damage == "not json":
        meta_path.write_bytes(b"{\"key\": \xff")
    elif damage == "no checksum":
        del metadata["checksum"]
        meta_path.write_text(json.dumps(metadata))
    elif damage == "other key":
        metadata["key"] = "0" * 32
        meta_path.write_text(json.dumps(metadata))
    else:
        metadata["tensors"]["chosen"]["shape"] = [4]
        meta_path.write_text(json.dumps(metadata))
    warning = _load_rejected(tmp_path)
    assert reason in warning["reason"]


def test_an_entry_copied_under_another_key_is_rejected(tmp_path):
    other = ref_cache.cache_key(model="m", data="d", settings={"max_length": 128})
    _save(tmp_path)
    for suffix in (".pt", ".json"):
        (tmp_path / f"{other}{suffix}").write_bytes((tmp_path / f"{KEY}{suffix}").read_bytes())
    assert "metadata is for key" in _load_rejected(tmp_path, other)["reason"]


def test_tensors_of_the_wrong_length_are_rejected(tmp_path):
    path = _save(tmp_path)
    torch.save({"chosen": CHOSEN[:2], "rejected": REJECTED[:2]}, path)
    assert "has shape [2], metadata records [3]" in _load_rejected(tmp_path)["reason"]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_values_are_rejected(tmp_path, bad):
    _save(tmp_path, rejected=torch.tensor([-1.0, bad, -2.0]))  # a well-formed entry with a matching checksum
    assert "rejected holds non-finite values" in _load_rejected(tmp_path)["reason"]


@posix_only
def test_save_replaces_planted_links_and_never_writes_through_them(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    victims = {suffix: tmp_path / f"victim{suffix}" for suffix in (".pt", ".json")}
    for suffix, victim in victims.items():
        victim.write_text(f"precious {suffix}\n")
        (cache / f"{KEY}{suffix}").symlink_to(victim)
    _load_rejected(cache)  # the links themselves are refused on read
    _save(cache)
    for suffix, victim in victims.items():
        assert victim.read_text() == f"precious {suffix}\n"
        entry = cache / f"{KEY}{suffix}"
        assert not entry.is_symlink() and stat.S_ISREG(os.lstat(entry).st_mode)
        assert _mode(entry) == 0o600
    assert ref_cache.load(cache, KEY) == (CHOSEN.tolist(), REJECTED.tolist())


@posix_only
@pytest.mark.parametrize("suffix", [".pt", ".json"])
def test_load_refuses_an_entry_that_is_a_link_to_a_valid_entry(tmp_path, suffix):
    elsewhere, cache = tmp_path / "elsewhere", tmp_path / "cache"
    _save(elsewhere)
    _save(cache)
    entry = cache / f"{KEY}{suffix}"
    entry.unlink()
    entry.symlink_to(elsewhere / f"{KEY}{suffix}")
    warning = _load_rejected(cache)
    assert warning["path"] == str(entry) and "symbolic link" in warning["reason"]


@posix_only
def test_a_fifo_at_the_entry_path_is_refused_without_blocking(tmp_path):
    _save(tmp_path)
    (tmp_path / f"{KEY}.pt").unlink()
    os.mkfifo(tmp_path / f"{KEY}.pt")
    assert "not a regular file" in _load_rejected(tmp_path)["reason"]


@posix_only
@pytest.mark.parametrize("umask", [0o022, 0o000, 0o277])
def test_created_directories_are_private_and_existing_ones_untouched(tmp_path, umask):
    parent = tmp_path / "shared"
    parent.mkdir()
    parent.chmod(0o755)
    cache = parent / "aligntune" / "ref-logps"
    previous = os.umask(umask)
    try:
        _save(cache)
    finally:
        os.umask(previous)
    assert _mode(cache) == 0o700 and _mode(cache.parent) == 0o700
    assert _mode(parent) == 0o755  # existed before: left as the user set it
    assert ref_cache.load(cache, KEY) == (CHOSEN.tolist(), REJECTED.tolist())


@posix_only
def test_an_existing_cache_directory_keeps_its_mode(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o750)
    _save(cache)
    assert _mode(cache) == 0o750
    assert ref_cache.load(cache, KEY) == (CHOSEN.tolist(), REJECTED.tolist())


@posix_only
def test_a_world_writable_directory_is_not_read_from(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o777)
    with capture_logs() as logs:
        _save(cache)
    assert [entry["event"] for entry in logs] == [
        "reference log-prob cache directory is not private; its entries will not be read back"]
    warning = _load_rejected(cache)
    assert warning["path"] == str(cache) and "writable by every user" in warning["reason"]


@pytest.mark.parametrize("key", ["", "../escape", "a/b", "x" * 129])
def test_keys_that_are_not_plain_names_are_refused(tmp_path, key):
    with pytest.raises(ValueError, match="invalid reference cache key"):
        _save(tmp_path, key=key)
    with pytest.raises(ValueError, match="invalid reference cache key"):
        ref_cache.load(tmp_path, key)
