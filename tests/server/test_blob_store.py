from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edgefleet.protocol.errors import EdgefleetError, NotFoundError
from edgefleet.server.blobs import FsBlobStore

DATA = os.urandom(300_000)
SHA = hashlib.sha256(DATA).hexdigest()


async def _chunks(data: bytes, size: int = 65536, fail_after: int | None = None) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        if fail_after is not None and i >= fail_after:
            raise ConnectionResetError("client went away")
        yield data[i : i + size]


def _put(store: FsBlobStore, sha: str, chunks: AsyncIterator[bytes], max_bytes: int = 10**9):
    return asyncio.run(store.put(sha, chunks, max_bytes=max_bytes))


def _all_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_put_then_read_ranges(tmp_path: Path) -> None:
    store = FsBlobStore(tmp_path)
    result = _put(store, SHA, _chunks(DATA))
    assert (result.sha256, result.length, result.created) == (SHA, len(DATA), True)
    assert store.size(SHA) == len(DATA)
    assert b"".join(store.read(SHA, 0, len(DATA))) == DATA
    assert b"".join(store.read(SHA, 1000, 70_000)) == DATA[1000:71_000]
    assert _all_files(tmp_path) == [tmp_path / SHA[:2] / SHA]


def test_duplicate_put_is_idempotent_and_still_verified(tmp_path: Path) -> None:
    store = FsBlobStore(tmp_path)
    _put(store, SHA, _chunks(DATA))
    mtime = store.path(SHA).stat().st_mtime_ns
    again = _put(store, SHA, _chunks(DATA))
    assert (again.created, again.length) == (False, len(DATA))
    assert store.path(SHA).stat().st_mtime_ns == mtime
    with pytest.raises(EdgefleetError) as info:
        _put(store, SHA, _chunks(DATA[:-1]))
    assert info.value.code == "sha256_mismatch"


@pytest.mark.parametrize(
    ("sha", "chunks", "max_bytes", "error"),
    [
        ("0" * 64, lambda: _chunks(DATA), 10**9, "sha256_mismatch"),
        (SHA, lambda: _chunks(DATA), len(DATA) - 1, "payload_too_large"),
        (SHA, lambda: _chunks(DATA, fail_after=131072), 10**9, ConnectionResetError),
    ],
)
def test_failed_put_leaves_nothing(tmp_path: Path, sha: str, chunks, max_bytes: int, error) -> None:
    store = FsBlobStore(tmp_path)
    if isinstance(error, str):
        with pytest.raises(EdgefleetError) as info:
            _put(store, sha, chunks(), max_bytes)
        assert info.value.code == error
    else:
        with pytest.raises(error):
            _put(store, sha, chunks(), max_bytes)
    assert _all_files(tmp_path) == []
    assert store.size(sha) is None


def test_read_missing_blob(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError) as info:
        FsBlobStore(tmp_path).read(SHA, 0, 1)
    assert info.value.code == "blob_not_found"


def test_invalid_digest_never_touches_paths(tmp_path: Path) -> None:
    with pytest.raises(EdgefleetError) as info:
        FsBlobStore(tmp_path).path("../../etc/passwd")
    assert info.value.code == "invalid_sha256"


def test_sweep_removes_only_old_temp_files(tmp_path: Path) -> None:
    store = FsBlobStore(tmp_path)
    shard = tmp_path / "ab"
    shard.mkdir()
    old, fresh = shard / f".{'ab' * 32}.1.tmp", shard / f".{'ab' * 32}.2.tmp"
    old.write_bytes(b"x")
    fresh.write_bytes(b"y")
    os.utime(old, (1000, 1000))
    now = fresh.stat().st_mtime + 10
    assert store.sweep_temp(now_s=now, older_than_s=3600) == 1
    assert store.temp_files() == [fresh]
