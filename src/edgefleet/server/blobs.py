"""Content-addressed blob storage. One small interface; the filesystem is its first implementation.

Writes stream into a temp file in the blob's own directory while hashing and counting, so the size
limit and the sha256 are enforced before anything becomes visible; then fsync, atomic rename, fsync of
the directory. Any failure (bad hash, too large, client gone, disk full) removes the temp file.
An object store can replace this by implementing ``BlobStore``.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import AsyncIterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import anyio.to_thread

from edgefleet.protocol.errors import InvalidDocumentError, NotFoundError, PayloadTooLargeError

__all__ = [
    "BlobStore",
    "FsBlobStore",
    "PutResult",
    "check_sha256",
    "read_file_span",
    "sha256_mismatch",
    "too_large",
]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_READ_CHUNK_BYTES = 256 * 1024
_TEMP_SUFFIX = ".tmp"


def check_sha256(value: str) -> str:
    if not _SHA256.fullmatch(value):
        raise InvalidDocumentError(
            "not a sha256 digest",
            code="invalid_sha256",
            expected="64 lowercase hex characters",
            got=value[:80],
        )
    return value


def sha256_mismatch(expected: str, got: str) -> InvalidDocumentError:
    return InvalidDocumentError(
        "content does not match its sha256", code="sha256_mismatch", expected=expected, got=got
    )


def too_large(max_bytes: int, got: int | str) -> PayloadTooLargeError:
    return PayloadTooLargeError("blob is larger than the limit", expected=f"<= {max_bytes} bytes", got=got)


@dataclass(frozen=True)
class PutResult:
    sha256: str
    length: int
    created: bool


class BlobStore(Protocol):
    def size(self, sha256: str) -> int | None:
        """The stored length, or ``None`` when absent."""
        ...

    async def put(self, sha256: str, chunks: AsyncIterable[bytes], *, max_bytes: int) -> PutResult:
        """Store the stream under ``sha256``; verifies hash and size; idempotent."""
        ...

    def read(self, sha256: str, start: int, length: int) -> Iterator[bytes]:
        """Yield ``length`` bytes from ``start`` (NotFoundError ``blob_not_found`` if absent)."""
        ...

    def sweep_temp(self, *, now_s: float, older_than_s: float) -> int:
        """Remove temp files abandoned by crashed writers; returns how many."""
        ...


class FsBlobStore:
    """Blobs at ``root/ab/abcdef...``; temp files ``root/ab/.abcdef....<rand>.tmp`` beside them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        check_sha256(sha256)
        return self.root / sha256[:2] / sha256

    def size(self, sha256: str) -> int | None:
        try:
            return self.path(sha256).stat().st_size
        except FileNotFoundError:
            return None

    async def put(self, sha256: str, chunks: AsyncIterable[bytes], *, max_bytes: int) -> PutResult:
        final = self.path(sha256)
        if final.exists():
            length, got = await _drain(chunks, max_bytes)
            if got != sha256:
                raise sha256_mismatch(sha256, got)
            return PutResult(sha256, length, created=False)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{sha256}.{secrets.token_hex(6)}{_TEMP_SUFFIX}")
        digest = hashlib.sha256()
        length = 0
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            with os.fdopen(fd, "wb") as fh:
                async for chunk in chunks:
                    length += len(chunk)
                    if length > max_bytes:
                        raise too_large(max_bytes, f"> {max_bytes} bytes (stopped reading)")
                    digest.update(chunk)
                    fh.write(chunk)
                got = digest.hexdigest()
                if got != sha256:
                    raise sha256_mismatch(sha256, got)
                fh.flush()
                # The flush to disk of a large blob takes long: off the event loop, so device polls and
                # other requests of this worker are not held up behind it.
                await anyio.to_thread.run_sync(os.fsync, fh.fileno())
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        await anyio.to_thread.run_sync(_fsync_dir, final.parent)
        return PutResult(sha256, length, created=True)

    def read(self, sha256: str, start: int, length: int) -> Iterator[bytes]:
        try:
            fh = open(self.path(sha256), "rb")  # noqa: SIM115 - closed by the generator below
        except FileNotFoundError:
            raise NotFoundError("no such blob", code="blob_not_found", got=sha256) from None
        return _read_span(fh, start, length)

    def sweep_temp(self, *, now_s: float, older_than_s: float) -> int:
        removed = 0
        for tmp in self.root.glob(f"*/.*{_TEMP_SUFFIX}"):
            try:
                if now_s - tmp.stat().st_mtime > older_than_s:
                    tmp.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed

    def temp_files(self) -> list[Path]:
        """Temp files present now (tests use this to prove nothing half-written remains)."""
        return sorted(self.root.glob(f"*/.*{_TEMP_SUFFIX}"))


def read_file_span(path: Path, start: int, length: int) -> Iterator[bytes]:
    """Yield ``length`` bytes of the file at ``path`` from ``start`` (opened now: missing -> OSError)."""
    return _read_span(open(path, "rb"), start, length)


def _read_span(fh: BinaryIO, start: int, length: int) -> Iterator[bytes]:
    with fh:
        fh.seek(start)
        left = length
        while left > 0:
            chunk = fh.read(min(_READ_CHUNK_BYTES, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk


async def _drain(chunks: AsyncIterable[bytes], max_bytes: int) -> tuple[int, str]:
    digest = hashlib.sha256()
    length = 0
    async for chunk in chunks:
        length += len(chunk)
        if length > max_bytes:
            raise too_large(max_bytes, f"> {max_bytes} bytes (stopped reading)")
        digest.update(chunk)
    return length, digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
