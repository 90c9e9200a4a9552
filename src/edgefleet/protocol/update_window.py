"""The maintenance window rule, in one place: parse a window, and say whether it is open at a moment in a
device's time zone and when it opens next. Pure (no clock: ``now`` is passed in).

The agent enforces it at the switch (it alone knows its clock then); the control plane judges it with the
zone the device reports, to account honestly for devices that wait (``pending: window``); the fleet's twin
uses it to simulate the same thing. None of them re-judge it.

A window is ``[Day ]HH:MM-HH:MM[ local| utc]`` (``"22:00-05:00 local"``, ``"sun 01:00-05:00"``) or ``any``:
every day (or once a week on ``Day``), from the first minute to the last, wrapping midnight when the end
comes before the start. ``local`` (the default) is the device's time zone; ``utc`` ignores it. Across a
daylight-saving change the window follows the wall clock: a start that falls in a skipped hour opens at the
first wall-clock minute that exists after it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo

from edgefleet.protocol.errors import InvalidDocumentError

__all__ = [
    "MAX_ZONE_CHARS",
    "UpdateWindow",
    "check_zone",
    "next_window_open",
    "parse_update_window",
    "window_open",
    "zone_or_utc",
]

MAX_ZONE_CHARS = 64
WINDOW_SYNTAX = "'[Day ]HH:MM-HH:MM[ local|utc]' or 'any'"
_WINDOW = re.compile(r"^(?:(mon|tue|wed|thu|fri|sat|sun) )?(\d{2}):(\d{2})-(\d{2}):(\d{2})(?: (local|utc))?$")
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_MIN = 1440
_ZONE_NAME = re.compile(r"^[A-Za-z0-9_+\-]+(?:/[A-Za-z0-9_+\-]+){0,3}$")


@dataclass(frozen=True)
class UpdateWindow:
    """A parsed window: minutes of the day (``start_min`` inclusive, ``end_min`` exclusive, may wrap
    midnight), optionally one ``weekday`` (0 = Monday), in the device's zone unless ``utc``."""

    start_min: int
    end_min: int
    weekday: int | None = None
    utc: bool = False

    @classmethod
    def parse(cls, text: str) -> UpdateWindow | None:
        """``parse_update_window`` (``None`` for ``any``)."""
        return parse_update_window(text)

    @property
    def length_min(self) -> int:
        return (self.end_min - self.start_min) % _DAY_MIN

    @property
    def period_min(self) -> int:
        return _DAY_MIN if self.weekday is None else 7 * _DAY_MIN

    @property
    def offset_min(self) -> int:
        """Where the window starts in its period (minute of the day, or of the week from Monday 00:00)."""
        return self.start_min + (0 if self.weekday is None else self.weekday * _DAY_MIN)


def parse_update_window(text: str) -> UpdateWindow | None:
    """``"22:00-05:00 local"`` -> a window; ``"any"`` (or empty) -> ``None``.

    Raises ``InvalidDocumentError`` (``invalid_update_window``) saying what was expected and what arrived:
    another syntax, an impossible time (``25:00``), or an empty window (start equal to end)."""
    if not isinstance(text, str) or len(text) > 64:
        raise InvalidDocumentError(
            "update window is not a short string", code="invalid_update_window", expected=WINDOW_SYNTAX,
            got=str(text)[:80],
        )  # fmt: skip
    cleaned = " ".join(text.strip().lower().split())
    if cleaned in ("", "any"):
        return None
    match = _WINDOW.fullmatch(cleaned)
    if not match:
        raise InvalidDocumentError(
            f"update window {text!r} does not parse", code="invalid_update_window", expected=WINDOW_SYNTAX,
            got=text,
        )  # fmt: skip
    day, h1, m1, h2, m2, where = match.groups()
    hours, minutes = (int(h1), int(h2)), (int(m1), int(m2))
    if max(hours) > 23 or max(minutes) > 59:
        raise InvalidDocumentError(
            f"update window {text!r} has an impossible time", code="invalid_update_window",
            expected="hours 00-23, minutes 00-59", got=text,
        )  # fmt: skip
    start, end = hours[0] * 60 + minutes[0], hours[1] * 60 + minutes[1]
    if start == end:
        raise InvalidDocumentError(
            f"update window {text!r} is empty", code="invalid_update_window",
            expected="an end different from the start ('any' for no window)", got=text,
        )  # fmt: skip
    return UpdateWindow(start, end, _WEEKDAYS.index(day) if day else None, where == "utc")


def check_zone(name: str) -> tzinfo:
    """The IANA zone ``name`` (``Europe/Berlin``), or ``InvalidDocumentError`` (``invalid_time_zone``)."""
    if not isinstance(name, str) or len(name) > MAX_ZONE_CHARS or not _ZONE_NAME.fullmatch(name):
        raise InvalidDocumentError(
            "time zone is not an IANA zone name", code="invalid_time_zone", expected="e.g. Europe/Berlin",
            got=str(name)[:80],
        )  # fmt: skip
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # here: zoneinfo loads sysconfig (~0.3 MiB resident)

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise InvalidDocumentError(
            f"unknown time zone {name!r}", code="invalid_time_zone", expected="an IANA zone name", got=name
        ) from exc


def zone_or_utc(name: str | None) -> tzinfo:
    """The zone a device reported, or UTC when it reported none or one this host does not know."""
    if not name:
        return timezone.utc
    try:
        return check_zone(name)
    except InvalidDocumentError:
        return timezone.utc


def _zone(window: UpdateWindow, tz: str | None) -> tzinfo:
    return timezone.utc if window.utc else zone_or_utc(tz)


def _minute_of_period(window: UpdateWindow, local: datetime) -> float:
    day = local.weekday() * _DAY_MIN if window.weekday is not None else 0
    return day + local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60


def window_open(window: UpdateWindow | None, tz: str | None, now: datetime) -> bool:
    """Whether a switch may happen at ``now`` (aware) on a device in zone ``tz`` (``None``: UTC)."""
    if window is None:
        return True
    minute = _minute_of_period(window, now.astimezone(_zone(window, tz)))
    return (minute - window.offset_min) % window.period_min < window.length_min


def next_window_open(window: UpdateWindow | None, tz: str | None, now: datetime) -> datetime:
    """The first moment at or after ``now`` inside the window (``now`` itself when it is open)."""
    if window_open(window, tz, now):
        return now
    assert window is not None
    zone = _zone(window, tz)
    local = now.astimezone(zone)
    wait_min = (window.offset_min - _minute_of_period(window, local)) % window.period_min
    wall = local.replace(tzinfo=None) + timedelta(minutes=wait_min)
    opens = wall.replace(tzinfo=zone).astimezone(timezone.utc)
    if opens <= now:  # a daylight-saving jump made the wall-clock arithmetic land behind us
        opens = now + timedelta(minutes=wait_min)
    return opens
