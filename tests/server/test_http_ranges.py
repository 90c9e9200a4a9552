from __future__ import annotations

import pytest

from edgefleet.server.errors import RangeNotSatisfiableError
from edgefleet.server.http_ranges import ByteSpan, decide, parse_range

ETAG = '"abc"'


@pytest.mark.parametrize(
    ("header", "size", "span"),
    [
        ("bytes=0-9", 100, ByteSpan(0, 9)),
        ("bytes=90-", 100, ByteSpan(90, 99)),
        ("bytes=90-500", 100, ByteSpan(90, 99)),
        ("bytes=-10", 100, ByteSpan(90, 99)),
        ("bytes=-500", 100, ByteSpan(0, 99)),
        ("bytes = 5 - 5", 100, ByteSpan(5, 5)),
        ("bytes=0-1,5-6", 100, None),  # several spans: whole body
        ("items=0-1", 100, None),
        ("bytes=9-2", 100, None),
        ("bytes=-", 100, None),
        ("garbage", 100, None),
    ],
)
def test_parse_range(header: str, size: int, span: ByteSpan | None) -> None:
    assert parse_range(header, size) == span


@pytest.mark.parametrize(
    ("header", "size"), [("bytes=100-", 100), ("bytes=200-300", 100), ("bytes=-0", 100), ("bytes=0-", 0)]
)
def test_unsatisfiable_ranges(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiableError) as info:
        parse_range(header, size)
    assert info.value.code == "range_not_satisfiable"
    assert info.value.details["size"] == size


@pytest.mark.parametrize(
    ("headers", "status", "span"),
    [
        ({}, 200, ByteSpan(0, 99)),
        ({"range": "bytes=10-19"}, 206, ByteSpan(10, 19)),
        ({"if-none-match": ETAG}, 304, None),
        ({"if-none-match": '"other", W/"abc"'}, 304, None),
        ({"if-none-match": "*"}, 304, None),
        ({"if-none-match": '"other"'}, 200, ByteSpan(0, 99)),
        ({"range": "bytes=10-19", "if-range": ETAG}, 206, ByteSpan(10, 19)),
        ({"range": "bytes=10-19", "if-range": '"stale"'}, 200, ByteSpan(0, 99)),
        ({"range": "bytes=10-19", "if-range": "Wed, 21 Oct 2015 07:28:00 GMT"}, 200, ByteSpan(0, 99)),
    ],
)
def test_decide(headers: dict[str, str], status: int, span: ByteSpan | None) -> None:
    d = decide(headers, etag=ETAG, size=100)
    assert (d.status, d.span) == (status, span)
    assert d.content_range == (f"bytes {span.start}-{span.end}/100" if status == 206 and span else None)


def test_decide_empty_body() -> None:
    d = decide({}, etag=ETAG, size=0)
    assert (d.status, d.span) == (200, None)
