"""``agent.http_date``: the server's ``Date`` header (RFC 9110 section 5.6.7) read without ``email.utils``."""

from __future__ import annotations

import email.utils
import random
import time

import pytest

from edgefleet.agent.http_date import parse_http_date

SUNDAY = 784111777  # 1994-11-06 08:49:37 UTC, RFC 9110's example


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
        "Sunday, 06-Nov-94 08:49:37 GMT",  # obsolete rfc850
        "Sun Nov  6 08:49:37 1994",  # obsolete asctime
        "Sun Nov 06 08:49:37 1994",
        "  sun, 06 NOV 1994 08:49:37 gmt ",  # names in any case, surrounding space
        "Mon, 06 Nov 1994 08:49:37 GMT",  # the day name is not checked against the date
    ],
)
def test_the_three_forms(value: str) -> None:
    assert parse_http_date(value, now_year=2026) == SUNDAY


def test_imf_fixdate_as_email_utils_read_it() -> None:
    """What the channel used before: the same seconds for dates across four centuries, leap days included."""
    rng = random.Random(7)
    stamps = [0, 951782400, 4107542399, 951868799, 1709164800, 253402300799]  # 2000-02-29, 9999-12-31, ...
    stamps += [rng.randrange(-2208988800, 253402300800) for _ in range(2000)]
    for stamp in stamps:
        value = email.utils.formatdate(stamp, usegmt=True)
        assert parse_http_date(value) == email.utils.parsedate_to_datetime(value).timestamp(), value


def test_asctime_and_rfc850_of_the_same_moment() -> None:
    for stamp in (0, 1_000_000_000, int(time.time())):
        t = time.gmtime(stamp)
        asctime = time.strftime("%a %b %e %H:%M:%S %Y", t)
        rfc850 = time.strftime("%A, %d-%b-%y %H:%M:%S GMT", t)
        assert parse_http_date(asctime) == stamp
        assert parse_http_date(rfc850, now_year=t.tm_year) == stamp


@pytest.mark.parametrize(
    ("short_year", "now_year", "year"),
    [
        ("94", 2026, 1994),
        ("26", 2026, 2026),
        ("76", 2026, 2076),
        ("77", 2026, 1977),
        ("00", 2099, 2100),
        ("50", 2099, 2050),
    ],
)
def test_rfc850_two_digit_years_are_never_more_than_50_years_ahead(
    short_year: str, now_year: int, year: int
) -> None:
    got = parse_http_date(f"Sunday, 01-Jan-{short_year} 00:00:00 GMT", now_year=now_year)
    assert got is not None
    assert time.gmtime(got).tm_year == year


@pytest.mark.parametrize(
    "value",
    [
        "",
        "yesterday",
        "1994-11-06T08:49:37Z",
        "Sun, 06 Nov 1994 08:49:37 +0000",  # a zone other than GMT
        "Sun, 06 Nov 1994 08:49:37 PST",
        "Sun, 06 Nov 1994 08:49:37",
        "Sun 06 Nov 1994 08:49:37 GMT",  # the comma
        "Xyz, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Sun, 30 Feb 1994 08:49:37 GMT",
        "Sun, 29 Feb 1900 08:49:37 GMT",  # not a leap year
        "Sun, 00 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Sun, 06 Nov 1994 08:49:61 GMT",
        "Sun, 06 Nov 94 08:49:37 GMT",  # IMF-fixdate has four digits
        "Sun, 06 Nov 1994 8:49:37 GMT",
        "Sun, 06 Nov 1994 08:49 GMT",
        "Sun, 06 Nov 1994 08:49:37:00 GMT",
        "Sun, 0x6 Nov 1994 08:49:37 GMT",
        "Sun, ٠٦ Nov 1994 08:49:37 GMT",  # digits, but not ASCII ones
        "Sunday, 06-Nov-1994 08:49:37 GMT",
        "Sunday, 06-Nov 08:49:37 GMT",
        "Sun Nov 6 08:49:37 94",
    ],
)
def test_anything_else_is_none(value: str) -> None:
    assert parse_http_date(value) is None


def test_a_leap_second_reads_as_the_next_second() -> None:
    assert parse_http_date("Sat, 31 Dec 2016 23:59:60 GMT") == parse_http_date(
        "Sun, 01 Jan 2017 00:00:00 GMT"
    )


def test_the_endpoints_date_is_imf_fixdate_and_reads_back() -> None:
    """``format_http_date`` writes what ``email.utils`` wrote for the stdlib server, and parses back."""
    from edgefleet.agent.http_date import format_http_date

    for stamp in (0, 784111777, 951782400, 1709164800, 253402300799):
        assert format_http_date(stamp) == email.utils.formatdate(stamp, usegmt=True)
        assert parse_http_date(format_http_date(stamp)) == stamp
