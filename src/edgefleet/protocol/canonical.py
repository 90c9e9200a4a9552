"""Canonical JSON: the one byte form that is hashed and signed, and the one strict way JSON is read.

What every role accepts from outside (request bodies, device reports, telemetry, files): UTF-8 text holding
standard JSON, finite numbers only (no ``NaN``/``Infinity``, no float that overflows to infinity, integers
within 64 bits), no lone UTF-16 surrogate and no NUL character in any string (no database text column can
hold one), nested at most ``MAX_JSON_DEPTH`` deep. Anything else
is refused with ``malformed_json`` before it can reach a database, a signature or a response.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, NoReturn

__all__ = ["MAX_JSON_DEPTH", "MAX_JSON_INT", "canonical_json", "loads_strict", "parse_json_bounded"]

MAX_JSON_DEPTH = 64
"""Arrays and objects nested deeper than this are refused (every document we define needs fewer than 10)."""
MAX_JSON_INT = 2**63 - 1
"""Integers beyond a signed 64-bit range are refused: no database column or runtime could hold them."""
_SURROGATE = re.compile("[\ud800-\udfff]")
_NUL = "\x00"
_EXPECTED = "UTF-8 JSON with finite numbers, no lone surrogates or NUL characters, nested at most 64 deep"


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no insignificant whitespace, UTF-8. Same value -> same bytes."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


class _Refused(ValueError):
    """Raised from inside ``json.loads`` hooks; carries what arrived (never the raw value itself)."""


def _refuse_constant(name: str) -> NoReturn:
    raise _Refused(f"non-finite number {name}")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"number out of range: {text[:40]}")
    return value


def _bounded_int(text: str) -> int:
    if len(text) > 20:
        raise _Refused(f"integer out of range: {text[:40]}...")
    value = int(text)
    if not -MAX_JSON_INT - 1 <= value <= MAX_JSON_INT:
        raise _Refused(f"integer out of range: {text}")
    return value


def _check_tree(value: Any) -> None:
    """Depth and lone surrogates, iteratively (a deep document cannot exhaust the Python stack here)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise _Refused("a string holds a lone UTF-16 surrogate")
            if _NUL in item:
                raise _Refused("a string holds a NUL character")
        elif isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise _Refused(f"nested deeper than {MAX_JSON_DEPTH}")
            if isinstance(item, dict):
                for key, child in item.items():
                    if _SURROGATE.search(key):
                        raise _Refused("a key holds a lone UTF-16 surrogate")
                    if _NUL in key:
                        raise _Refused("a key holds a NUL character")
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)


def loads_strict(data: bytes | str, *, what: str = "document") -> Any:
    """Parse JSON under the rules above; ``InvalidDocumentError`` ``malformed_json`` otherwise. The error
    says why (``details.got``) without repeating the offending bytes."""
    from edgefleet.protocol.errors import InvalidDocumentError

    def refuse(reason: str) -> NoReturn:
        raise InvalidDocumentError(
            f"{what} is not valid JSON: {reason}", code="malformed_json", expected=_EXPECTED, got=reason
        )

    if isinstance(data, bytes | bytearray):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            refuse(f"not UTF-8 (byte {exc.start})")
    else:
        text = data
    try:
        value = json.loads(
            text, parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_bounded_int
        )
        _check_tree(value)
    except _Refused as exc:
        refuse(str(exc))
    except json.JSONDecodeError as exc:
        refuse(f"{exc.msg} at line {exc.lineno} column {exc.colno}")
    except RecursionError:
        refuse(f"nested deeper than {MAX_JSON_DEPTH}")
    return value


def parse_json_bounded(data: bytes | str, *, max_bytes: int, what: str = "document") -> Any:
    """Check the size, then :func:`loads_strict`; errors carry a stable code."""
    from edgefleet.protocol.errors import PayloadTooLargeError

    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if len(raw) > max_bytes:
        raise PayloadTooLargeError(
            f"{what} is too large", code="document_too_large", expected=f"<= {max_bytes} bytes", got=len(raw)
        )
    return loads_strict(raw, what=what)
