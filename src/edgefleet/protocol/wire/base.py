"""The structs' common base and the one way to read a document into one.

``read_document`` is the agent's ``Document.parse``: a dict (or JSON bytes) in, a struct out, or an
``InvalidDocumentError`` saying where, what was expected and what arrived, in the same shape the server's
pydantic errors take (``details.errors``: ``field``, ``expected``, ``got``)."""

from __future__ import annotations

import re
from typing import Annotated, Any, TypeVar

import msgspec

from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.protocol.names import NAME_PATTERN, SHA256_PATTERN

__all__ = ["Name", "Sha256Hex", "WireStruct", "read_document", "read_part", "to_plain", "whole"]


def whole(pattern: str) -> str:
    """``pattern`` (anchored ``^...$``) as a msgspec pattern that matches what the models' matches. msgspec
    checks with Python's ``re.search``, whose ``$`` also matches before a final newline (``"default\\n"``
    would be a name); pydantic's regex engine does not, and neither does ``\\Z``."""
    return pattern.removesuffix("$") + r"\Z" if pattern.endswith("$") else pattern


Name = Annotated[str, msgspec.Meta(pattern=whole(NAME_PATTERN))]
Sha256Hex = Annotated[str, msgspec.Meta(pattern=whole(SHA256_PATTERN))]

S = TypeVar("S", bound="WireStruct")
_AT = re.compile(r"^(?P<expected>.*?)(?: - at `(?P<where>[^`]*)`(?: in `(?P<container>[^`]*)`)?)?$", re.S)
_MISSING = re.compile(r"^Object missing required field ([A-Za-z_][A-Za-z0-9_]*)$")
_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\[\.\.\.\]")


class WireStruct(msgspec.Struct, kw_only=True):
    """A part of a wire document. Unknown fields are ignored on reading (a newer server may add some);
    the agent never writes back a document it read, so none is lost. msgspec applies ``kw_only`` to the
    fields a class defines, so each struct says ``kw_only=True`` again (its fields are keywords, in any
    order, as the models' are)."""

    @classmethod
    def read(cls: type[S], data: Any) -> S:
        """``data`` (a dict, or JSON bytes) as this struct, validated (``read_part``)."""
        return read_part(data, cls, kind=cls.__name__)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data, as ``Document.to_dict`` gives (``to_plain``)."""
        return to_plain(self)


def _value_at(data: object, where: str) -> object:
    """The value at a msgspec error path (``$.slots[...].manifest.path``), as far as it can be followed."""
    node = data
    for step in _STEP.finditer(where.removeprefix("$")):
        name, index = step.group(1), step.group(2)
        if name is not None and isinstance(node, dict) and name in node:
            node = node[name]
        elif index is not None and isinstance(node, list) and int(index) < len(node):
            node = node[int(index)]
        else:
            return None
    return node


def _error(kind: str, exc: msgspec.ValidationError, data: object) -> InvalidDocumentError:
    match = _AT.match(str(exc))
    expected = (match.group("expected") if match else str(exc)).replace("`", "").removeprefix("Expected ")
    # a pattern as the model writes it (``whole``): msgspec quotes it as a repr, its backslash doubled
    expected = expected.replace("\\\\Z'", "$'")
    where = (match.group("container") or match.group("where") or "$") if match else "$"
    if match and match.group("container"):
        where += ".<key>"
    got = _value_at(data, where) if not isinstance(data, bytes | str) else None
    if not isinstance(got, str | int | float | bool | type(None)):
        got = type(got).__name__
    missing = _MISSING.match(expected)
    if missing:  # named as the model names it: the field, not the object that lacks it
        where += f".{missing.group(1)}"
    field = where.removeprefix("$").removeprefix(".") or "(document)"
    return InvalidDocumentError(
        f"invalid {kind}: {field}: {expected}",
        details={"errors": [{"field": field, "expected": expected, "got": got}]},
    )


def read_part(data: Any, struct: type[S], *, kind: str) -> S:
    """``data`` (a dict, or JSON bytes) as ``struct``, or ``InvalidDocumentError``."""
    try:
        if isinstance(data, bytes | str):
            return msgspec.json.decode(data, type=struct)
        return msgspec.convert(data, struct)
    except msgspec.DecodeError as exc:
        if isinstance(exc, msgspec.ValidationError):
            raise _error(kind, exc, data) from exc
        raise InvalidDocumentError(f"{kind} is not JSON: {exc}", expected="JSON", got="bytes") from exc


def read_document(data: Any, struct: type[S], *, kind: str, schema_version: int = 1) -> S:
    """A top-level document: an object whose ``schema_version`` (absent: ``schema_version``) is the one
    this agent reads, then ``read_part``. The checks and their codes are ``Document.parse``'s."""
    if isinstance(data, bytes | str):
        try:
            data = msgspec.json.decode(data)
        except msgspec.DecodeError as exc:
            raise InvalidDocumentError(f"{kind} is not JSON: {exc}", expected="JSON", got="bytes") from exc
    if not isinstance(data, dict):
        raise InvalidDocumentError(f"{kind} must be an object", expected="object", got=type(data).__name__)
    version = data.get("schema_version", schema_version)
    if version != schema_version:
        raise InvalidDocumentError(
            f"unsupported {kind} schema_version",
            code="unsupported_schema_version",
            expected=schema_version,
            got=version,
        )
    return read_part(data, struct, kind=kind)


def to_plain(struct: msgspec.Struct) -> dict[str, Any]:
    """A struct as plain JSON-able data (datetimes as RFC 3339 text), as ``Document.to_dict`` gives."""
    out = msgspec.to_builtins(struct)
    assert isinstance(out, dict)
    return out
