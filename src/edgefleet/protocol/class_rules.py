"""A hardware class's rules that a schema cannot carry: the update window's syntax, CPU flag names, which
window a device gets. Plain functions, no validation library.

The pydantic ``HardwareClass`` (``edgefleet.protocol.hardware_class``, which re-exports these) and the
agent's struct (``edgefleet.protocol.wire.hardware_class``) call the same functions: one text per rule."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.protocol.update_window import parse_update_window

__all__ = [
    "MAX_WINDOW_OVERRIDES",
    "checked_cpu_features",
    "checked_window",
    "device_window",
]

MAX_WINDOW_OVERRIDES = 64


def checked_window(value: str) -> str:
    """``value`` when it is an update window (``protocol.update_window``), else ``ValueError`` saying why."""
    try:
        parse_update_window(value)
    except InvalidDocumentError as exc:
        raise ValueError(f"{exc.message}; expected {exc.details.get('expected')}") from exc
    return value


def checked_cpu_features(value: list[str] | None) -> list[str] | None:
    """A class's ``cpu_features`` as stored: /proc/cpuinfo flag names (letters, digits, ``_``; at most 32
    characters), lower-cased, sorted, without repeats; ``ValueError`` for a name that is not one."""
    if value is None:
        return None
    bad = [f for f in value if not f or len(f) > 32 or not f.replace("_", "").isalnum()]
    if bad:
        raise ValueError(f"cpu feature names are /proc/cpuinfo flags (letters, digits, _); got {bad}")
    return sorted({f.lower() for f in value})


def device_window(document: Mapping[str, Any], labels: Mapping[str, str]) -> str:
    """The update window of a device with ``labels`` in a class (its stored document, already validated):
    the first ``window_overrides`` entry whose labels all match, else the class's ``update_window``."""
    for override in document.get("window_overrides") or []:
        wanted = override.get("labels") or {} if isinstance(override, Mapping) else {}
        if wanted and all(labels.get(k) == v for k, v in wanted.items()):
            return str(override.get("update_window") or "any")
    return str(document.get("update_window") or "any")
