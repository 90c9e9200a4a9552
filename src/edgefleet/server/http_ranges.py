"""Conditional and ranged GETs of immutable, content-addressed bytes: a pure decision.

Handles one ``Range: bytes=...`` span (multiple spans are answered with the whole body, which
RFC 9110 allows), ``If-None-Match`` (304) and ``If-Range`` (a strong ETag; a date never matches,
so the client gets the full, current body).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from edgefleet.server.errors import RangeNotSatisfiableError

__all__ = ["ByteSpan", "Decision", "decide", "parse_range"]

_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$")
_MAX_HEADER_CHARS = 1024


@dataclass(frozen=True)
class ByteSpan:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1


@dataclass(frozen=True)
class Decision:
    status: int  # 200, 206 or 304
    span: ByteSpan | None  # None for 304 and for an empty body
    size: int

    @property
    def content_range(self) -> str | None:
        if self.status != 206 or self.span is None:
            return None
        return f"bytes {self.span.start}-{self.span.end}/{self.size}"


def parse_range(header: str, size: int) -> ByteSpan | None:
    """One span, or ``None`` if the header is not a single well-formed bytes range (serve it all).

    Raises ``RangeNotSatisfiableError`` when it is well formed but misses the body entirely.
    """
    if len(header) > _MAX_HEADER_CHARS or "," in header:
        return None
    match = _RANGE.match(header)
    if not match or (not match.group(1) and not match.group(2)):
        return None
    first, last = match.group(1), match.group(2)
    if first:
        start = int(first)
        end = int(last) if last else size - 1
        if last and end < start:
            return None
        if start >= size:
            raise _unsatisfiable(header, size)
        return ByteSpan(start, min(end, size - 1))
    suffix = int(last)
    if suffix == 0 or size == 0:
        raise _unsatisfiable(header, size)
    return ByteSpan(max(size - suffix, 0), size - 1)


def _unsatisfiable(header: str, size: int) -> RangeNotSatisfiableError:
    return RangeNotSatisfiableError(
        "requested range is outside the content",
        expected=f"a range within 0-{max(size - 1, 0)}",
        got=header,
        details={"size": size},
    )


def _etag_matches(header: str, etag: str) -> bool:
    candidates = [c.strip() for c in header.split(",")]
    return "*" in candidates or any(c.removeprefix("W/") == etag for c in candidates)


def decide(headers: Mapping[str, str], *, etag: str, size: int) -> Decision:
    """Decide the status and byte span for a GET/HEAD given request headers (lower-case keys)."""
    inm = headers.get("if-none-match")
    if inm is not None and _etag_matches(inm[:_MAX_HEADER_CHARS], etag):
        return Decision(304, None, size)
    whole = Decision(200, ByteSpan(0, size - 1) if size else None, size)
    range_header = headers.get("range")
    if range_header is None:
        return whole
    if_range = headers.get("if-range")
    if if_range is not None and if_range.strip() != etag:
        return whole
    span = parse_range(range_header, size)
    if span is None:
        return whole
    return Decision(206, span, size)
