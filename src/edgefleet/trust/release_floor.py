"""Release floors: the lowest release counter a device may install, per model and hardware class.

The release team sets them (``edgefleet publish ... --release-floor N``) and the offline release key signs
them, as the field ``x-edgefleet-release-floors`` of the TUF ``targets`` metadata::

    "x-edgefleet-release-floors": {"digits/medical-cart-cpu": 3}

A device reads them from its *verified* targets only, so neither the control plane nor a mirror can lower
them, and TUF's rollback protection (a device never accepts an older targets version) makes a raised floor
durable. Floors never go down: the publisher and the image repository both refuse a lower one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tuf.api.metadata import Targets

from edgefleet.protocol.document import NAME_PATTERN
from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.trust.errors import TargetsRejectedError

__all__ = [
    "MAX_RELEASE_FLOOR",
    "RELEASE_FLOORS_FIELD",
    "floor_for",
    "line_key",
    "parse_line_key",
    "raise_floors",
    "release_floors_of",
    "set_release_floors",
]

RELEASE_FLOORS_FIELD = "x-edgefleet-release-floors"
MAX_RELEASE_FLOOR = 2**53 - 1
"""The largest counter JSON carries exactly everywhere."""
MAX_LINES = 4096
_NAME = re.compile(NAME_PATTERN)


def line_key(model: str, hardware_class: str) -> str:
    """A release line: ``<model>/<hardware_class>`` (release counters increase along it)."""
    return f"{model}/{hardware_class}"


def parse_line_key(key: str) -> tuple[str, str]:
    """``"digits/medical-cart-cpu"`` -> ``("digits", "medical-cart-cpu")``; refuses anything else."""
    model, sep, hardware_class = key.partition("/") if isinstance(key, str) else ("", "", "")
    if not sep or not _NAME.fullmatch(model) or not _NAME.fullmatch(hardware_class):
        raise InvalidDocumentError(
            "invalid release line",
            code="invalid_release_floors",
            expected="<model>/<hardware_class>",
            got=key,
        )
    return model, hardware_class


def _check_floor(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_RELEASE_FLOOR:
        raise InvalidDocumentError(
            "invalid release floor",
            code="invalid_release_floors",
            expected=f"an integer 0..{MAX_RELEASE_FLOOR} for {key}",
            got=value,
        )
    return value


def release_floors_of(targets: Targets) -> dict[str, int]:
    """Pure: the signed floors of ``targets`` (empty when it carries none); refuses a malformed field."""
    raw = targets.unrecognized_fields.get(RELEASE_FLOORS_FIELD)
    if raw is None:
        return {}
    if not isinstance(raw, dict) or len(raw) > MAX_LINES:
        raise InvalidDocumentError(
            "invalid release floors",
            code="invalid_release_floors",
            expected=f"an object of at most {MAX_LINES} '<model>/<hardware_class>': counter entries",
            got=type(raw).__name__ if not isinstance(raw, dict) else f"{len(raw)} entries",
        )
    floors: dict[str, int] = {}
    for key, value in raw.items():
        parse_line_key(key)
        floors[key] = _check_floor(key, value)
    return floors


def set_release_floors(targets: Targets, floors: Mapping[str, int]) -> None:
    """Write ``floors`` into ``targets`` (before signing); no field at all when there are none."""
    checked: dict[str, int] = {}
    for key, value in sorted(floors.items()):
        parse_line_key(key)
        checked[key] = _check_floor(key, value)
    if checked:
        targets.unrecognized_fields[RELEASE_FLOORS_FIELD] = checked
    else:
        targets.unrecognized_fields.pop(RELEASE_FLOORS_FIELD, None)


def raise_floors(current: Mapping[str, int], requested: Mapping[str, int]) -> dict[str, int]:
    """Pure: ``current`` with ``requested`` applied; refuses to lower a floor (``release_floor_lowered``)."""
    merged = dict(current)
    for key, value in requested.items():
        parse_line_key(key)
        _check_floor(key, value)
        if value < merged.get(key, 0):
            raise TargetsRejectedError(
                f"release floors never go down ({key})",
                code="release_floor_lowered",
                expected=f">= {merged[key]}",
                got=value,
            )
        merged[key] = value
    return merged


def floor_for(floors: Mapping[str, int], model: str, hardware_class: str) -> int:
    return floors.get(line_key(model, hardware_class), 0)
