"""Atomic writes: the destination is either the old file or the complete new one, never a mix."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgefleet.durable import atomic_write_bytes, open_atomic


def test_replaces_whole_file(tmp_path: Path) -> None:
    dest = tmp_path / "manifest.json"
    dest.write_bytes(b"old")
    atomic_write_bytes(dest, b"new contents")
    assert dest.read_bytes() == b"new contents"
    assert oct(dest.stat().st_mode & 0o777) == oct(0o644)
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_failure_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    dest = tmp_path / "manifest.json"
    dest.write_bytes(b"old")

    def crash_mid_write() -> None:
        with open_atomic(dest) as handle:
            handle.write(b"half")
            raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        crash_mid_write()
    assert dest.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]
