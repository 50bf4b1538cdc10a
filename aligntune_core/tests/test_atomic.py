"""aligntune.atomic: the old file or the whole new one, never half, and nothing left behind."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from aligntune import atomic
from aligntune.atomic import write_atomic_with, write_bytes_atomic, write_json_atomic, write_text_atomic


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(atomic.TEMPORARY_SUFFIX))


@pytest.fixture
def old_file(tmp_path: Path) -> Path:
    path = tmp_path / "state.json"
    path.write_text('{"old": true}\n', encoding="utf-8")
    return path


@pytest.mark.parametrize("interruption", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_a_writer_failing_midway_leaves_the_old_file_and_no_temporary(old_file, interruption):
    seen: list[Path] = []

    def half_then_fail(temporary: Path) -> None:
        seen.append(temporary)
        temporary.write_text('{"new": tr', encoding="utf-8")  # half of the new file is on disk...
        raise interruption  # ...when the process is interrupted

    with pytest.raises(type(interruption)):
        write_atomic_with(old_file, half_then_fail)
    assert old_file.read_text(encoding="utf-8") == '{"old": true}\n'
    assert seen and seen[0].parent == old_file.parent  # the temporary was in the same directory...
    assert not seen[0].exists() and _leftovers(old_file.parent) == []  # ...and is gone


def test_a_failing_fsync_leaves_the_old_file_and_no_temporary(old_file, monkeypatch):
    def failing_fsync(descriptor: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="Input/output error"):
        write_bytes_atomic(old_file, b'{"new": true}\n')
    monkeypatch.undo()
    assert old_file.read_text(encoding="utf-8") == '{"old": true}\n'
    assert _leftovers(old_file.parent) == []


def test_a_value_json_cannot_write_touches_nothing(old_file):
    class Loop(dict):
        pass

    looped = Loop()
    looped["self"] = looped
    with pytest.raises(ValueError, match="Circular reference"):
        write_json_atomic(old_file, looped)
    assert old_file.read_text(encoding="utf-8") == '{"old": true}\n'
    assert _leftovers(old_file.parent) == []


def test_the_file_and_then_the_directory_are_fsynced_before_and_after_the_rename(old_file, monkeypatch):
    """Observed through a wrapper around the real os.fsync: what each fsynced descriptor is, and what the final
    name held at that moment."""
    real_fsync = os.fsync
    calls: list[tuple[str, int, str]] = []

    def recording_fsync(descriptor: int) -> None:
        info = os.fstat(descriptor)
        kind = "directory" if stat.S_ISDIR(info.st_mode) else "file"
        calls.append((kind, info.st_ino, old_file.read_text(encoding="utf-8")))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    write_json_atomic(old_file, {"new": True})
    monkeypatch.undo()
    assert json.loads(old_file.read_text(encoding="utf-8")) == {"new": True}
    kinds = [kind for kind, _, _ in calls]
    assert kinds[0] == "file"
    file_inode, held_then = calls[0][1], calls[0][2]
    assert file_inode == old_file.stat().st_ino  # the fsynced file is the one now at the final name...
    assert held_then == '{"old": true}\n'  # ...and it was fsynced before it replaced the old one
    if atomic._O_DIRECTORY:  # POSIX: the directory entry is made durable too
        assert kinds[-1] == "directory"
        assert calls[-1][1] == old_file.parent.stat().st_ino


def test_the_path_form_fsyncs_what_the_writer_wrote(tmp_path, monkeypatch):
    real_fsync = os.fsync
    synced: list[int] = []

    def recording_fsync(descriptor: int) -> None:
        if stat.S_ISREG(os.fstat(descriptor).st_mode):
            synced.append(os.fstat(descriptor).st_ino)
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    target = tmp_path / "tensors.bin"
    write_atomic_with(target, lambda temporary: temporary.write_bytes(b"\x00\x01" * 1000))
    monkeypatch.undo()
    assert target.read_bytes() == b"\x00\x01" * 1000
    assert synced == [target.stat().st_ino]


def test_text_bytes_and_json_round_trip_and_return_the_path(tmp_path):
    assert write_text_atomic(tmp_path / "a.txt", "héllo\n").read_text(encoding="utf-8") == "héllo\n"
    assert write_bytes_atomic(str(tmp_path / "b.bin"), b"\xff").read_bytes() == b"\xff"
    path = write_json_atomic(tmp_path / "c.json", {"path": tmp_path, "n": 1})
    assert json.loads(path.read_text(encoding="utf-8")) == {"path": str(tmp_path), "n": 1}
    assert _leftovers(tmp_path) == []


@pytest.mark.skipif(os.name != "posix", reason="symbolic links and modes as POSIX has them")
def test_a_planted_link_is_replaced_not_written_through_and_modes_are_kept(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me", encoding="utf-8")
    link = tmp_path / "record.json"
    link.symlink_to(victim)
    write_json_atomic(link, {"a": 1}, mode=0o600)
    assert victim.read_text(encoding="utf-8") == "keep me"
    assert not link.is_symlink() and json.loads(link.read_text(encoding="utf-8")) == {"a": 1}
    assert stat.S_IMODE(link.stat().st_mode) == 0o600
    umask = os.umask(0o022)
    try:
        shared = write_text_atomic(tmp_path / "shared.txt", "x")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o644  # as open() would have made it


def test_a_missing_directory_is_an_error_not_a_created_tree(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_text_atomic(tmp_path / "absent" / "x.txt", "x")
    assert not (tmp_path / "absent").exists()


def test_the_reference_cache_writes_through_it(tmp_path, monkeypatch):
    """An interrupted cache write keeps the previous entry readable and leaves no temporary file; entries are
    private files."""
    torch = pytest.importorskip("torch")
    from aligntune.modeling import ref_cache

    directory = tmp_path / "cache"
    key = "k" * 32
    ref_cache.save(directory, key, torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -4.0]), {})
    real_save = torch.save

    def interrupted_save(obj, destination, *args, **kwargs):
        real_save(obj, destination, *args, **kwargs)
        raise KeyboardInterrupt  # after the bytes are written, before the rename

    monkeypatch.setattr(torch, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        ref_cache.save(directory, key, torch.tensor([-5.0, -6.0]), torch.tensor([-7.0, -8.0]), {})
    monkeypatch.undo()
    assert ref_cache.load(directory, key) == ([-1.0, -2.0], [-3.0, -4.0])
    assert _leftovers(directory) == []
    if os.name == "posix":
        assert {stat.S_IMODE(p.stat().st_mode) for p in directory.iterdir()} == {0o600}
