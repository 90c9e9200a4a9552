"""``key=value`` command-line options (labels, label filters, rollout targets), parsed one way everywhere."""

from __future__ import annotations

from collections.abc import Iterable

from edgefleet.protocol.errors import InvalidDocumentError

__all__ = ["parse_labels", "parse_pairs"]


def parse_pairs(
    values: Iterable[str], *, what: str, code: str, require_value: bool = False
) -> dict[str, str]:
    """Pure: ``("a=1", "b=2")`` -> ``{"a": "1", "b": "2"}``. A missing ``=`` or key, an empty value where
    ``require_value``, or one key given two different values is an ``InvalidDocumentError`` with ``code``."""
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key or (require_value and not value):
            raise InvalidDocumentError(f"{what} is key=value", code=code, expected="key=value", got=item)
        if out.get(key, value) != value:
            raise InvalidDocumentError(
                f"{what} {key!r} is given twice", code=code, expected="each key once", got=[out[key], value]
            )
        out[key] = value
    return out


def parse_labels(values: Iterable[str]) -> dict[str, str]:
    """``--label key=value`` options (an empty value is allowed: ``key=``)."""
    return parse_pairs(values, what="a label", code="invalid_labels")
