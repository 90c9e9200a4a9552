"""The one window rule (``protocol.update_window``): parsing, open/closed in a zone, the next opening."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.protocol.hardware_class import HardwareClass
from edgefleet.protocol.update_window import (
    UpdateWindow,
    check_zone,
    next_window_open,
    parse_update_window,
    window_open,
)

UTC = timezone.utc
MON = datetime(2026, 11, 30, tzinfo=UTC)  # a Monday, 00:00 UTC (Berlin: UTC+1, New York: UTC-5)


def test_parse() -> None:
    assert parse_update_window("any") is None
    assert parse_update_window(" ") is None
    assert parse_update_window("22:00-05:00 local") == UpdateWindow(22 * 60, 5 * 60)
    assert parse_update_window("Sun 01:00-05:00") == UpdateWindow(60, 300, weekday=6)
    assert parse_update_window("02:00-04:00 UTC") == UpdateWindow(120, 240, utc=True)


@pytest.mark.parametrize("text", ["2am to 4am", "25:00-02:00", "02:00-02:00", "02:00-04:60", "x" * 100])
def test_a_window_that_does_not_parse_is_refused_with_expected_and_got(text: str) -> None:
    with pytest.raises(InvalidDocumentError) as info:
        parse_update_window(text)
    assert info.value.code == "invalid_update_window"
    assert info.value.details["expected"]
    assert "got" in info.value.details


def test_open_in_the_devices_zone() -> None:
    window = parse_update_window("01:00-02:00")
    assert window_open(window, "Europe/Berlin", MON + timedelta(minutes=1))  # 01:01 Berlin
    assert not window_open(window, "UTC", MON + timedelta(minutes=1))
    assert not window_open(window, None, MON)  # no zone reported: UTC
    assert window_open(parse_update_window("01:00-02:00 utc"), "Europe/Berlin", MON + timedelta(hours=1))
    wrap = parse_update_window("22:00-05:00")
    assert not window_open(wrap, "America/New_York", MON)  # 19:00 on Sunday in New York
    assert window_open(wrap, "America/New_York", MON + timedelta(hours=4))  # 23:00 in New York
    assert window_open(wrap, "UTC", MON)  # midnight in UTC: inside the wrapped window
    assert window_open(None, "Europe/Berlin", MON)


def test_weekly_window_and_next_opening() -> None:
    sunday = parse_update_window("sun 01:00-05:00")
    assert next_window_open(sunday, "UTC", MON) == MON + timedelta(days=6, hours=1)
    assert window_open(sunday, "UTC", MON + timedelta(days=6, hours=4, minutes=59))
    daily = parse_update_window("02:00-03:00")
    assert next_window_open(daily, "Europe/Berlin", MON) == MON + timedelta(hours=1)
    inside = MON + timedelta(hours=1, minutes=30)
    assert next_window_open(daily, "Europe/Berlin", inside) == inside
    tomorrow = MON + timedelta(days=1, hours=1)
    assert next_window_open(daily, "Europe/Berlin", MON + timedelta(hours=2)) == tomorrow


def test_the_window_follows_the_wall_clock_across_daylight_saving() -> None:
    daily = parse_update_window("02:00-03:00")
    before = datetime(2026, 3, 27, 12, tzinfo=UTC)  # Berlin moves to UTC+2 on Sunday 29 March
    friday = next_window_open(daily, "Europe/Berlin", before)
    assert friday == datetime(2026, 3, 28, 1, tzinfo=UTC)  # 02:00 CET
    after = next_window_open(daily, "Europe/Berlin", datetime(2026, 3, 30, 12, tzinfo=UTC))
    assert after == datetime(2026, 3, 31, 0, tzinfo=UTC)  # 02:00 CEST


def test_zones() -> None:
    assert check_zone("Europe/Berlin")
    for bad in ("Mars/Olympus", "../etc/passwd", "", "x" * 80):
        with pytest.raises(InvalidDocumentError) as info:
            check_zone(bad)
        assert info.value.code == "invalid_time_zone"


def _class(**extra):
    return {
        "name": "c",
        "cpu_arch": "x86_64",
        "budgets": {"ram_mb": 512, "storage_mb": 512, "max_model_mb": 50},
        "performance": {"latency_p95_ms": 50},
        **extra,
    }


def test_a_class_window_and_its_label_overrides() -> None:
    doc = HardwareClass.parse(
        _class(
            update_window="22:00-05:00 local",
            window_overrides=[
                {"labels": {"site": "plant-7", "line": "2"}, "update_window": "12:00-12:30"},
                {"labels": {"site": "plant-7"}, "update_window": "sun 01:00-05:00"},
            ],
        )
    )
    assert doc.window_for({"site": "plant-7", "line": "2"}) == "12:00-12:30"
    assert doc.window_for({"site": "plant-7", "line": "1"}) == "sun 01:00-05:00"
    assert doc.window_for({"site": "plant-8"}) == "22:00-05:00 local"


@pytest.mark.parametrize(
    ("extra", "code", "field"),
    [
        ({"update_window": "2am to 4am"}, "invalid_update_window", "update_window"),
        (
            {"window_overrides": [{"labels": {"a": "b"}, "update_window": "9-5"}]},
            "invalid_update_window",
            "window_overrides.0.update_window",
        ),
        (
            {"window_overrides": [{"labels": {}, "update_window": "01:00-02:00"}]},
            "empty_selector",
            "window_overrides.0.labels",
        ),
    ],
)
def test_a_class_with_a_bad_window_is_refused(extra, code, field) -> None:
    with pytest.raises(InvalidDocumentError) as info:
        HardwareClass.parse(_class(**extra))
    assert info.value.code == code
    assert info.value.details["field"] == field
