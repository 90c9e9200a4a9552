"""Model deltas: a signed file that rebuilds one artifact file from one the device already holds.

A delta is a TUF target of its own (its length and sha256 signed by the release key, like every target),
published under the *result's* artifact prefix at a path named by the base's hash::

    <model>/<version>/<class>/deltas/<base sha256>/<file path>.efdelta

so a device finds the delta for what it holds by that file's hash alone, never by a version name. Its signed
``custom.edgefleet.delta`` (:class:`DeltaCustom`) names the base (sha256, length) and the result (path,
sha256, length): the result is always a full file of the artifact's manifest, itself a signed target.

The file (``EFDELTA1``) is a header and one zstd frame of operations, each producing the next bytes of the
result, in order::

    "EFDELTA1" | u32 header length | header (JSON: base and result sha256 and length, encoding)
    zstd( op* "E" )   op = "C" u64 offset u64 n            copy base[offset:offset+n]
                         | "A" u64 offset u64 n  n bytes  base[offset:offset+n] + bytes (bytewise mod 256)
                         | "L" u64 n  n bytes             literal bytes

How the operations were chosen (tensor by tensor for ONNX, a binary diff for other formats) is the
publisher's business (``edgefleet.optimize.deltas``); the device applies them all the same way, here.

:func:`apply_delta` is the device side and trusts nothing in the delta beyond its signed hash: the header must
repeat the signed custom fields, every operation is checked against the base's bounds, the output is cut
off *while writing* as soon as it would pass the result's signed length (a decompression bomb cannot fill the
disk), and the rebuilt file must have the result's signed sha256 and length before it is renamed into place.
Any refusal raises a :class:`DeltaRejectedError` (or a ``HashMismatchError``) and leaves no output file: the
caller falls back to the full download.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import zstandard

from edgefleet.trust.errors import HashMismatchError, TrustError
from edgefleet.trust.target_custom import (
    DELTA_SUFFIX,
    DELTAS_DIR,
    DeltaCustom,
    delta_target_path,
    is_delta_path,
)

__all__ = [
    "DELTAS_DIR",
    "DELTA_SUFFIX",
    "MAGIC",
    "DeltaCustom",
    "DeltaRejectedError",
    "DeltaWriter",
    "apply_delta",
    "check_delta_use",
    "delta_target_path",
    "is_delta_path",
]

MAGIC = b"EFDELTA1"
MAX_HEADER_BYTES = 4096
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_COPY, _ADD, _LITERAL, _END = b"C", b"A", b"L", b"E"
_CHUNK_BYTES = 1 << 20

Encoding = Literal["onnx-tensors", "bsdiff"]


class DeltaRejectedError(TrustError):
    """A delta cannot rebuild its result: ``delta_base_missing`` (the device does not hold its base),
    ``delta_mismatch`` (its signed fields or header disagree with what it is used for), ``delta_corrupt``
    (truncated, tampered, an operation out of bounds), ``delta_too_large`` (its output would pass the
    result's signed length), ``delta_chain`` (its base or result is itself a delta). The device falls back
    to the full download."""

    code = "delta_rejected"


def _header(custom: DeltaCustom) -> bytes:
    fields = {
        "base_length": custom.base_length,
        "base_sha256": custom.base_sha256,
        "encoding": custom.encoding,
        "result_length": custom.result_length,
        "result_sha256": custom.result_sha256,
    }
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


class DeltaWriter:
    """Publisher side: write operations into a delta file (one zstd frame after the header).

    Adjacent copies are merged; the caller states the result it means, and :meth:`close` refuses a delta
    whose operations do not add up to the result's length."""

    def __init__(self, path: Path, custom: DeltaCustom, *, level: int = 19) -> None:
        self._custom = custom
        self._fh = open(path, "wb")  # noqa: SIM115 - closed in close()
        header = _header(custom)
        self._fh.write(MAGIC + _U32.pack(len(header)) + header)
        self._zw = zstandard.ZstdCompressor(level=level).stream_writer(self._fh, closefd=False)
        self._written = 0
        self._pending_copy: tuple[int, int] | None = None

    def copy(self, base_offset: int, n: int) -> None:
        if n <= 0:
            return
        pending = self._pending_copy
        if pending is not None and pending[0] + pending[1] == base_offset:
            self._pending_copy = (pending[0], pending[1] + n)
        else:
            self._flush_copy()
            self._pending_copy = (base_offset, n)
        self._written += n

    def add(self, base_offset: int, diff: bytes) -> None:
        """``base[offset:offset+len(diff)] + diff`` (bytewise, mod 256); all-zero runs become copies."""
        if not diff:
            return
        if not any(diff):
            self.copy(base_offset, len(diff))
            return
        self._flush_copy()
        self._zw.write(_ADD + _U64.pack(base_offset) + _U64.pack(len(diff)) + diff)
        self._written += len(diff)

    def literal(self, data: bytes) -> None:
        if not data:
            return
        self._flush_copy()
        self._zw.write(_LITERAL + _U64.pack(len(data)) + data)
        self._written += len(data)

    def _flush_copy(self) -> None:
        if self._pending_copy is not None:
            offset, n = self._pending_copy
            self._zw.write(_COPY + _U64.pack(offset) + _U64.pack(n))
            self._pending_copy = None

    def close(self) -> None:
        self._flush_copy()
        self._zw.write(_END)
        self._zw.close()  # type: ignore[no-untyped-call]  # zstandard leaves close() unannotated
        self._fh.close()
        if self._written != self._custom.result_length:
            raise ValueError(
                f"delta writes {self._written} bytes, the result has {self._custom.result_length}"
            )


def _reject(message: str, *, code: str, expected: object = None, got: object = None) -> DeltaRejectedError:
    return DeltaRejectedError(message, code=code, expected=expected, got=got)


def _read_exact(reader: BinaryIO, n: int) -> bytes:
    parts: list[bytes] = []
    left = n
    try:
        while left > 0:
            chunk = reader.read(min(left, _CHUNK_BYTES))
            if not chunk:
                break
            parts.append(chunk)
            left -= len(chunk)
    except zstandard.ZstdError as exc:
        raise _reject("the delta does not decompress", code="delta_corrupt", got=str(exc)) from exc
    data = b"".join(parts)
    if len(data) != n:
        raise _reject("the delta ends early (truncated)", code="delta_corrupt", expected=n, got=len(data))
    return data


def _file_digest(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    length = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK_BYTES):
            digest.update(chunk)
            length += len(chunk)
    return digest.hexdigest(), length


def check_delta_use(custom: DeltaCustom, *, result_path: str, sha256: str, length: int) -> None:
    """Pure: the signed delta fields rebuild exactly the full target ``result_path`` (its signed sha256 and
    length), from a base that is not itself a delta. Raises ``delta_chain`` / ``delta_mismatch``."""
    for path in (result_path, custom.result_path, custom.base_path):
        if is_delta_path(path):
            raise _reject(
                "a delta may only rebuild a full target from a full target", code="delta_chain", got=path
            )
    signed = (custom.result_path, custom.result_sha256, custom.result_length)
    if signed != (result_path, sha256, length):
        raise _reject(
            "the delta rebuilds another file than the one assigned",
            code="delta_mismatch",
            expected={"path": result_path, "sha256": sha256, "length": length},
            got={"path": custom.result_path, "sha256": custom.result_sha256, "length": custom.result_length},
        )


def apply_delta(
    delta: Path, base: Path, out: Path, custom: DeltaCustom, *, on_write: Callable[[], None] | None = None
) -> Path:
    """Rebuild ``out`` from ``base`` with ``delta`` (already verified against its signed target), checked
    against ``custom`` (the delta's signed fields). Returns ``out``, which holds exactly the result's signed
    sha256 and length, fsynced; raises and leaves no ``out`` otherwise. ``on_write`` is called after each
    piece written to the partial file (flushed first): the agent's crash points (``delta:<file name>``)."""
    base_sha, base_len = _file_digest(base)
    if (base_sha, base_len) != (custom.base_sha256, custom.base_length):
        raise _reject(
            "the held base differs from the delta's",
            code="delta_base_missing",
            expected={"sha256": custom.base_sha256, "length": custom.base_length},
            got={"sha256": base_sha, "length": base_len},
        )
    partial = out.with_name(f".{out.name}.delta-partial")
    try:
        with open(delta, "rb") as dfh, open(base, "rb") as bfh, open(partial, "wb") as ofh:
            _check_header(dfh, custom)
            digest = _rebuild(dfh, bfh, ofh, custom, on_write)
            ofh.flush()
            os.fsync(ofh.fileno())
        if digest != custom.result_sha256:
            raise HashMismatchError(
                "the rebuilt file differs from the signed target",
                expected={"sha256": custom.result_sha256, "length": custom.result_length},
                got={"sha256": digest, "length": custom.result_length},
            )
        os.replace(partial, out)
        return out
    finally:
        partial.unlink(missing_ok=True)


def _check_header(dfh: BinaryIO, custom: DeltaCustom) -> None:
    head = dfh.read(len(MAGIC) + _U32.size)
    if len(head) != len(MAGIC) + _U32.size or head[: len(MAGIC)] != MAGIC:
        raise _reject(
            "not an edgefleet delta", code="delta_corrupt", expected=MAGIC.decode(), got=head[:8].hex()
        )
    (size,) = _U32.unpack(head[len(MAGIC) :])
    if size > MAX_HEADER_BYTES:
        raise _reject(
            "delta header too large", code="delta_corrupt", expected=f"<= {MAX_HEADER_BYTES}", got=size
        )
    header = dfh.read(size)
    if header != _header(custom):
        raise _reject(
            "the delta's header disagrees with its signed fields",
            code="delta_mismatch",
            expected=_header(custom).decode(),
            got=header[:512].decode(errors="replace"),
        )


def _rebuild(
    dfh: BinaryIO, bfh: BinaryIO, ofh: BinaryIO, custom: DeltaCustom, on_write: Callable[[], None] | None
) -> str:
    limit = custom.result_length
    base_len = custom.base_length
    digest = hashlib.sha256()
    written = 0
    reader = zstandard.ZstdDecompressor().stream_reader(dfh, read_across_frames=False)

    def emit(chunks: Iterable[bytes], n: int) -> None:
        nonlocal written
        if written + n > limit:  # checked before a single byte of it is written
            raise _reject(
                "the delta would write past the result's signed length",
                code="delta_too_large",
                expected=f"<= {limit} bytes",
                got=written + n,
            )
        for chunk in chunks:
            ofh.write(chunk)
            digest.update(chunk)
        written += n
        if on_write is not None:
            ofh.flush()
            on_write()

    def base_range(offset: int, n: int) -> Iterable[bytes]:
        if offset + n > base_len:
            raise _reject(
                "a delta operation reads past its base",
                code="delta_corrupt",
                expected=base_len,
                got=offset + n,
            )
        bfh.seek(offset)
        left = n
        while left:
            chunk = bfh.read(min(left, _CHUNK_BYTES))
            if not chunk:
                raise _reject("the base ended early", code="delta_base_missing", got=offset + n - left)
            left -= len(chunk)
            yield chunk

    while True:
        op = _read_exact(reader, 1)
        if op == _END:
            break
        if op == _COPY:
            offset, n = _U64.unpack(_read_exact(reader, 8))[0], _U64.unpack(_read_exact(reader, 8))[0]
            emit(base_range(offset, n), n)
        elif op == _ADD:
            offset, n = _U64.unpack(_read_exact(reader, 8))[0], _U64.unpack(_read_exact(reader, 8))[0]
            _check_room(written, n, limit)
            for chunk in base_range(offset, n):
                diff = np.frombuffer(_read_exact(reader, len(chunk)), dtype=np.uint8)
                summed = (np.frombuffer(chunk, dtype=np.uint8) + diff).tobytes()  # uint8 wraps: mod 256
                emit((summed,), len(summed))
        elif op == _LITERAL:
            (n,) = _U64.unpack(_read_exact(reader, 8))
            _check_room(written, n, limit)
            left = n
            while left:
                chunk = _read_exact(reader, min(left, _CHUNK_BYTES))
                emit((chunk,), len(chunk))
                left -= len(chunk)
        else:
            raise _reject(
                "unknown delta operation", code="delta_corrupt", expected="C, A, L or E", got=op.hex()
            )
    if reader.read(1):
        raise _reject("data after the delta's end", code="delta_corrupt", got="trailing bytes")
    if written != limit:
        raise _reject(
            "the delta ends before its result is complete", code="delta_corrupt", expected=limit, got=written
        )
    return digest.hexdigest()


def _check_room(written: int, n: int, limit: int) -> None:
    if written + n > limit:
        raise _reject(
            "the delta would write past the result's signed length",
            code="delta_too_large",
            expected=f"<= {limit} bytes",
            got=written + n,
        )
