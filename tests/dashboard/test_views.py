"""The pages' pure computations, table-driven."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from edgefleet.server.dashboard.views import device_series, fleet_summary, gate_tables, sum_degraded
from edgefleet.server.services.devices import DeviceFacts, StatusThresholds
from edgefleet.server.services.fleet_overview import overview_input_from_facts

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
DAY_S = 86400.0


def _dev(i, cls="a", seen_s_ago=10.0, revoked=False, status="ok", active="art_1"):
    return DeviceFacts(
        id=f"dev_{i}",
        hardware_class=cls,
        last_seen_at=None if seen_s_ago is None else NOW - timedelta(seconds=seen_s_ago),
        revoked=revoked,
        report_status=status,
        report_active=f"default={active}" if active else None,
    )


def _summary(devices, max_listed=50):
    fleet = overview_input_from_facts(
        devices, now=NOW, thresholds=StatusThresholds(), unseen_after_s=DAY_S, max_listed=max_listed
    )
    return fleet_summary(fleet, now=NOW, thresholds=StatusThresholds())


def test_fleet_summary_counts_lists_and_versions():
    devices = [
        _dev(1),
        _dev(2, seen_s_ago=300),  # stale
        _dev(3, cls="b", seen_s_ago=2 * DAY_S, active="art_2"),  # offline and long unseen
        _dev(4, cls="b", seen_s_ago=None, active=None),  # never seen
        _dev(5, status="degraded"),
        _dev(6, status="error", active="art_2"),
        _dev(7, revoked=True, status="error", seen_s_ago=None),  # revoked: counted, never listed
    ]
    s = _summary(devices)
    assert s.total == 7
    assert s.by_class == {
        "a": {"online": 3, "stale": 1, "offline": 0, "revoked": 1},
        "b": {"online": 0, "stale": 0, "offline": 2, "revoked": 0},
    }
    assert s.by_status == {"online": 3, "stale": 1, "offline": 2, "revoked": 1}
    assert s.versions == {"art_1": 3, "art_2": 2}
    assert [d["id"] for d in s.degraded] == ["dev_6", "dev_5"]  # errors first
    assert [d["id"] for d in s.unseen] == ["dev_4", "dev_3"]  # never seen first, then the longest silent
    assert (s.degraded_count, s.unseen_count) == (2, 2)


def test_fleet_summary_lists_are_bounded_but_counts_are_not():
    devices = [_dev(i, status="degraded", seen_s_ago=None) for i in range(30)]
    s = _summary(devices, max_listed=5)
    assert (len(s.degraded), s.degraded_count, len(s.unseen), s.unseen_count) == (5, 30, 5, 30)


def test_gate_tables_group_the_engines_rows_by_class_and_label_them_without_judging():
    decision = {
        "gates": [
            {"name": "error_rate", "hardware_class": "a", "verdict": "breach", "observed": 0.5},
            {"name": "requests", "hardware_class": "a", "verdict": "ok", "observed": 9.0},
            {"name": "error_rate", "hardware_class": "b", "verdict": "waiting", "observed": None},
        ]
    }
    tables = gate_tables(decision)
    assert [name for name, _ in tables] == ["a", "b"]
    assert [(r["label"], r["verdict"]) for r in tables[0][1]] == [
        ("Inference error rate", "breach"),
        ("Requests on the new version", "ok"),
    ]
    assert gate_tables(None) == gate_tables({}) == []


def test_device_series_is_oldest_first_and_sums_models():
    def window(minute, models, degraded=None):
        return {
            "end_at": (NOW + timedelta(minutes=minute)).isoformat(),
            "models": models,
            "degraded_s": degraded or {},
            "late_s": 2.0,
        }

    windows = [
        window(
            2,
            [
                {"requests": 5, "errors": 1, "latency_p95_ms": 9.0},
                {"requests": 1, "errors": 0, "latency_p95_ms": 12.0},
            ],
        ),
        window(1, [], {"cpu_fallback": 30.0, "rule": 5.0}),
    ]
    series = device_series(windows)
    assert series["x"] == sorted(series["x"])
    assert series["p95_ms"] == [None, 12.0]
    assert series["requests"] == [0, 6]
    assert series["errors"] == [0, 1]
    assert series["degraded_s"] == [35.0, 0.0]
    assert sum_degraded(windows) == {"cpu_fallback": 30.0, "rule": 5.0}
