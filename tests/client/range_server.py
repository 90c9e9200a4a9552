"""A fault-injecting stand-in for a blob endpoint, as an httpx transport (faults only; the real app is
used elsewhere). Serves one byte string with Range/If-Range and can cut, corrupt or ignore ranges."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterator

import httpx

__all__ = ["RangeServer"]


class _Cut(httpx.SyncByteStream):
    def __init__(self, data: bytes, cut_after: int | None) -> None:
        self.data = data
        self.cut_after = cut_after

    def __iter__(self) -> Iterator[bytes]:
        if self.cut_after is None:
            yield self.data
            return
        yield self.data[: self.cut_after]
        raise httpx.ReadError("connection reset by fault injection")


@dataclasses.dataclass
class RangeServer:
    data: bytes
    cut_after: list[int] = dataclasses.field(default_factory=list)
    """Per request, in order: cut the body after this many bytes (requests beyond the list are whole)."""
    ignore_range: bool = False
    corrupt: bool = False
    extra_bytes: int = 0
    refuse_connections: int = 0
    requests: list[dict[str, str]] = dataclasses.field(default_factory=list)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append({k.lower(): v for k, v in request.headers.items()})
        if self.refuse_connections > 0:
            self.refuse_connections -= 1
            raise httpx.ConnectError("connection refused by fault injection")
        body = self.data + b"x" * self.extra_bytes
        if self.corrupt:
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        status, start = 200, 0
        match = re.fullmatch(r"bytes=(\d+)-", request.headers.get("range", ""))
        if_range = request.headers.get("if-range")
        if match and not self.ignore_range and (if_range is None or if_range == f'"{self.sha256}"'):
            start = int(match.group(1))
            if start >= len(body):
                return httpx.Response(
                    416, json={"code": "range_not_satisfiable", "message": "no", "details": {}}
                )
            status = 206
        payload = body[start:]
        cut = self.cut_after.pop(0) if self.cut_after else None
        return httpx.Response(
            status,
            headers={"content-length": str(len(payload)), "etag": f'"{self.sha256}"'},
            stream=_Cut(payload, cut),
        )
