"""Canonical JSON: the one byte form that is hashed and signed."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["canonical_json", "parse_json_bounded"]


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no insignificant whitespace, UTF-8. Same value -> same bytes."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def parse_json_bounded(data: bytes | str, *, max_bytes: int, what: str = "document") -> Any:
    """Parse JSON after checking its size; errors carry a stable code."""
    from edgefleet.protocol.errors import InvalidDocumentError, PayloadTooLargeError

    raw = data.encode("utf-8") if isinstance(data, str) else data
    if len(raw) > max_bytes:
        raise PayloadTooLargeError(
            f"{what} is too large", code="document_too_large", expected=f"<= {max_bytes} bytes", got=len(raw)
        )
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidDocumentError(
            f"{what} is not valid JSON: {exc}", code="malformed_json", expected="JSON", got=str(exc)
        ) from exc
