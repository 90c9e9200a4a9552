"""Ids in API paths: routed only when well formed, and a malformed one answered as such.

A collection whose routes take an id through a convertor (``/v1/artifacts/{artifact:artifact_id}``) routes
only real ids, so ``GET /v1/rollouts/dry-run`` is a 405 naming ``POST`` rather than a lookup of a rollout
called ``dry-run``. The price is that a malformed id matches no route; ``malformed_id`` turns that 404
into 422 ``invalid_<kind>_id`` with the expected form and what arrived (the code the client raises before
sending), so a typo is never answered as a missing object.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from starlette.convertors import StringConvertor, register_url_convertor

from edgefleet.protocol.errors import InvalidDocumentError

__all__ = ["malformed_id", "register_id_path"]


@dataclass(frozen=True)
class _IdPath:
    prefix: str
    pattern: re.Pattern[str]
    code: str
    expected: str


_PATHS: list[_IdPath] = []


def register_id_path(convertor: str, *, prefix: str, regex: str, code: str, expected: str) -> None:
    """Routes ``{name:convertor}`` only for ids matching ``regex``; a path under ``prefix`` whose next
    segment is not one answers ``code``."""
    register_url_convertor(convertor, type(f"_{convertor}", (StringConvertor,), {"regex": regex})())
    _PATHS.append(_IdPath(prefix, re.compile(regex), code, expected))


def malformed_id(path: str) -> InvalidDocumentError | None:
    """For a path no route took: the error naming its malformed id, or ``None`` when it is not one."""
    for id_path in _PATHS:
        if path.startswith(id_path.prefix):
            segment = path[len(id_path.prefix) :].partition("/")[0]
            if segment and not id_path.pattern.fullmatch(segment):
                return InvalidDocumentError(
                    f"malformed id in the path: {segment[:80]!r}",
                    code=id_path.code,
                    expected=id_path.expected,
                    got=segment[:80],
                )
    return None
