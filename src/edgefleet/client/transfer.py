"""Streaming blob transfers: upload with progress; resumable, verified, atomic download.

A download writes to a ``.part`` file next to the destination and resumes it with ``Range`` /
``If-Range`` after a broken connection (or on the next call). Bytes past the promised length are refused
while streaming, the sha256 is checked before the final rename, and a mismatch deletes the partial file:
the destination either holds exactly the promised bytes or is untouched.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from edgefleet.client.errors import IntegrityError, ServerUnreachableError
from edgefleet.durable import fsync_dir
from edgefleet.protocol.errors import EdgefleetError, error_from_body

__all__ = [
    "CHUNK_BYTES",
    "ProgressCallback",
    "download_verified",
    "file_sha256",
    "iter_file",
    "part_path",
    "raise_for_error",
]

CHUNK_BYTES = 1 << 20
ProgressCallback = Callable[[int], None]
"""Called with the number of bytes just transferred (not a running total)."""


def file_sha256(path: Path, *, chunk_bytes: int = CHUNK_BYTES) -> tuple[str, int]:
    """The sha256 (hex) and length of a file, read in chunks."""
    digest = hashlib.sha256()
    length = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
            length += len(chunk)
    return digest.hexdigest(), length


def iter_file(
    path: Path, *, progress: ProgressCallback | None = None, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[bytes]:
    """Yield a file's bytes in chunks, reporting progress as each chunk is handed to the transport."""
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            yield chunk
            if progress is not None:
                progress(len(chunk))


def raise_for_error(response: httpx.Response) -> None:
    """Turn an error answer into the matching ``EdgefleetError`` (its ``code`` preserved)."""
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except ValueError:
        body = None
    raise error_from_body(response.status_code, body)


def part_path(dest: Path, sha256: str) -> Path:
    return dest.parent / f".{dest.name}.{sha256[:16]}.part"


def _hash_existing(path: Path) -> tuple[hashlib._Hash, int]:
    digest = hashlib.sha256()
    length = 0
    if path.exists():
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK_BYTES):
                digest.update(chunk)
                length += len(chunk)
    return digest, length


def download_verified(
    http: httpx.Client,
    url: str,
    dest: Path,
    *,
    sha256: str,
    length: int,
    progress: ProgressCallback | None = None,
    max_attempts: int = 5,
    backoff_s: float = 0.5,
    max_backoff_s: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Path:
    """Download ``url`` into ``dest``, resuming a partial file, verifying ``sha256`` and ``length``.

    Network failures are retried (resuming where the bytes stopped) up to ``max_attempts`` times, with
    capped exponential backoff; the last failure raises ``ServerUnreachableError``. Server errors
    (4xx/5xx with an edgefleet body) are raised at once.
    """
    dest = Path(dest)
    part = part_path(dest, sha256)
    digest, have = _hash_existing(part)
    if have > length:
        part.unlink()
        digest, have = hashlib.sha256(), 0
    if progress is not None and have:
        progress(have)
    last_error: Exception | None = None
    for attempt in range(max_attempts):
        if attempt:
            sleep(min(max_backoff_s, backoff_s * 2 ** (attempt - 1)))
        try:
            digest, have = _fetch_into(http, url, part, digest, have, length, sha256, progress)
            break
        except httpx.TransportError as exc:
            last_error = exc
            digest, have = _hash_existing(part)  # what actually reached the disk
        except IntegrityError:
            part.unlink(missing_ok=True)
            raise
    else:
        raise ServerUnreachableError(
            f"download of {url} failed after {max_attempts} attempts",
            details={"url": url, "received_bytes": have, "length": length},
            expected="a complete response",
            got=str(last_error),
        ) from last_error
    got = digest.hexdigest()
    if got != sha256:
        part.unlink(missing_ok=True)
        raise IntegrityError(f"downloaded bytes of {dest.name} do not match sha256", expected=sha256, got=got)
    os.replace(part, dest)
    fsync_dir(dest.parent)
    return dest


def _fetch_into(
    http: httpx.Client,
    url: str,
    part: Path,
    digest: hashlib._Hash,
    have: int,
    length: int,
    sha256: str,
    progress: ProgressCallback | None,
) -> tuple[hashlib._Hash, int]:
    if have == length:
        return digest, have
    headers = {"Accept-Encoding": "identity"}  # ranges count stored bytes, not compressed ones
    if have:
        headers |= {"Range": f"bytes={have}-", "If-Range": f'"{sha256}"'}
    with http.stream("GET", url, headers=headers) as response:
        if response.status_code >= 400:
            response.read()
            raise_for_error(response)
        if response.status_code == 200 and have:
            digest, have = hashlib.sha256(), 0  # server ignored the range: start over
        elif response.status_code not in (200, 206):
            raise EdgefleetError(
                f"unexpected answer to a download of {url}",
                code="unexpected_response",
                expected="200 or 206",
                got=response.status_code,
            )
        mode = "ab" if have else "wb"
        with open(part, mode) as handle:
            try:
                for chunk in response.iter_bytes():  # unbuffered: every byte received is kept
                    if have + len(chunk) > length:
                        raise IntegrityError(
                            f"server sent more bytes than promised for {url}",
                            code="length_mismatch",
                            expected=length,
                            got=f">{have + len(chunk) - 1}",
                        )
                    handle.write(chunk)
                    digest.update(chunk)
                    have += len(chunk)
                    if progress is not None:
                        progress(len(chunk))
            finally:
                handle.flush()
                os.fsync(handle.fileno())
    if have != length:
        if have > length:  # pragma: no cover - guarded while streaming
            part.unlink(missing_ok=True)
        raise httpx.ReadError(f"response ended early: {have} of {length} bytes")
    return digest, have
