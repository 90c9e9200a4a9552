"""The device's IANA time zone: the clock its update window is read in, and what it reports.

In order: the operator's choice (``agent run --time-zone``), ``TZ``, ``/etc/timezone``, the
``/etc/localtime`` link (``.../zoneinfo/Europe/Berlin``); a name this host's zone database does not know is
skipped (logged), and nothing found means UTC.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.protocol.update_window import check_zone

__all__ = ["detect_time_zone"]

log = logging.getLogger("edgefleet.agent")


def _from_etc(etc: Path) -> list[str]:
    names: list[str] = []
    with contextlib.suppress(OSError, UnicodeDecodeError):
        names.append((etc / "timezone").read_text(encoding="utf-8").strip())
    try:
        target = os.readlink(etc / "localtime")
    except OSError:
        target = ""
    if "zoneinfo/" in target:
        names.append(target.split("zoneinfo/", 1)[1])
    return names


def detect_time_zone(
    configured: str | None = None, *, env: Mapping[str, str] | None = None, etc: Path = Path("/etc")
) -> str:
    """The zone name to use (``UTC`` when nothing usable is found). ``configured`` must be valid: an
    operator's typo is an error (``invalid_time_zone``), not a silent UTC."""
    if configured:
        check_zone(configured)
        return configured
    environ = os.environ if env is None else env
    candidates = [environ.get("TZ", "").lstrip(":"), *_from_etc(etc)]
    for name in candidates:
        if not name:
            continue
        try:
            check_zone(name)
        except InvalidDocumentError:
            log.warning("event=time_zone_unknown name=%s", name[:64])
            continue
        return name
    return "UTC"
