"""HTTP ``Date`` values, read and written without ``email.utils`` (the resident agent no longer imports it).

RFC 9110 section 5.6.7: a server sends IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``); a recipient accepts
the two obsolete forms too, rfc850 (``Sunday, 06-Nov-94 08:49:37 GMT``) and asctime
(``Sun Nov  6 08:49:37 1994``). Names are read case-insensitively; the day name must be one but is not
checked against the date. Anything else is ``None``. ``format_http_date`` writes IMF-fixdate (the local
endpoint's ``Date`` header).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

__all__ = ["format_http_date", "parse_http_date"]

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_LONG_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


def parse_http_date(value: str, *, now_year: int | None = None) -> float | None:
    """``value`` (an HTTP-date) as seconds since the epoch, or ``None`` when it is not one.

    ``now_year`` (the current UTC year by default) places rfc850's two-digit year: the most recent year
    with those digits that is not more than 50 years in the future."""
    fields = value.split()
    try:
        if len(fields) == 6 and fields[0][:-1].lower() in _DAYS and fields[0].endswith(","):  # IMF-fixdate
            if fields[5].upper() != "GMT":
                return None
            day, month, year, clock = fields[1], fields[2], _digits(fields[3], 4), fields[4]
        elif len(fields) == 4 and fields[0][:-1].lower() in _LONG_DAYS and fields[0].endswith(","):  # rfc850
            day, month, short_year = fields[1].split("-")
            if fields[3].upper() != "GMT":
                return None
            year = _century(_digits(short_year, 2), time.gmtime().tm_year if now_year is None else now_year)
            clock = fields[2]
        elif len(fields) == 5 and fields[0].lower() in _DAYS:  # asctime
            month, day, clock, year = fields[1], fields[2], fields[3], _digits(fields[4], 4)
        else:
            return None
        hour, minute, second = (_digits(part, 2) for part in clock.split(":"))
        return _seconds(year, _MONTHS.index(month.lower()) + 1, _digits(day, 1, 2), hour, minute, second)
    except ValueError:  # a field missing, not digits, out of range, not a month
        return None


def format_http_date(seconds: float | None = None) -> str:
    """``seconds`` since the epoch (now by default) as IMF-fixdate: ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    t = time.gmtime(seconds)
    day, month = _DAYS[t.tm_wday].title(), _MONTHS[t.tm_mon - 1].title()
    return f"{day}, {t.tm_mday:02d} {month} {t.tm_year} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"


def _digits(text: str, least: int, most: int | None = None) -> int:
    if not (least <= len(text) <= (most or least)) or not all(c in "0123456789" for c in text):
        raise ValueError(text)
    return int(text)


def _century(short_year: int, now_year: int) -> int:
    year = now_year - now_year % 100 + short_year
    return year - 100 if year > now_year + 50 else year + 100 if year <= now_year - 50 else year


def _seconds(year: int, month: int, day: int, hour: int, minute: int, second: int) -> float:
    if second > 60:  # 60: a leap second, read as the next second (datetime has none)
        raise ValueError("out of range")
    moment = datetime(year, month, day, hour, minute, min(second, 59), tzinfo=timezone.utc)  # checks ranges
    return moment.timestamp() + (second == 60)
