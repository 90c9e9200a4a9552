"""The pages' pure computations, table-driven."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from edgefleet.server.dashboard.views import (
    DeviceFacts,
    device_series,
    fleet_summary,
    gate_rows,
    rollback_progress,
    sum_degraded,
)
from edgefleet.server.services.devices import StatusThresholds
from edgefleet.server.services.rollouts.policy import StageHealth
from edgefleet.server.services.rollouts.spec import Gates

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
    s = fleet_summary(devices, now=NOW, thresholds=StatusThresholds(), unseen_after_s=DAY_S)
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
    s = fleet_summary(devices, now=NOW, thresholds=StatusThresholds(), unseen_after_s=DAY_S, max_listed=5)
    assert (len(s.degraded), s.degraded_count, len(s.unseen), s.unseen_count) == (5, 30, 5, 30)


def _gates(**kw):
    return Gates(**kw).model_dump(mode="json")


def _states(rows):
    return {r.name: r.state for r in rows}


@pytest.mark.parametrize(
    ("gates", "health", "done_failed", "expected"),
    [
        (  # nothing reported yet: inference gates wait for evidence
            _gates(min_requests=10),
            StageHealth(),
            (0, 0),
            {
                "install_failure_rate": "waiting",
                "error_rate": "waiting",
                "latency_p95_ratio": "waiting",
                "min_requests": "waiting",
                "min_reporting_devices": "waiting",
            },
        ),
        (  # three times slower than the previous version: the ratio gate is breached
            _gates(min_requests=10),
            StageHealth(requests=40, latency_p95_ms=15.0, baseline_p95_ms=5.0, reporting_devices=1),
            (1, 0),
            {
                "install_failure_rate": "ok",
                "error_rate": "ok",
                "latency_p95_ms": "ok",
                "latency_p95_ratio": "breach",
                "min_requests": "ok",
            },
        ),
        (  # an install failed and the stage tolerates none
            _gates(),
            StageHealth(requests=5, errors=0, reporting_devices=1),
            (1, 1),
            {"install_failure_rate": "breach", "error_rate": "ok"},
        ),
        (  # errors over the ceiling; the latency gates are switched off
            _gates(max_error_rate=0.05, max_latency_p95_ratio=None),
            StageHealth(requests=100, errors=9, latency_p95_ms=5.0, reporting_devices=2),
            (2, 0),
            {"error_rate": "breach", "latency_p95_ratio": "off", "shadow_agreement": "off"},
        ),
        (  # shadow agreement below its floor
            _gates(min_shadow_agreement=0.9),
            StageHealth(requests=10, shadow_agreement=0.8, reporting_devices=1),
            (1, 0),
            {"shadow_agreement": "breach"},
        ),
    ],
)
def test_gate_rows(gates, health, done_failed, expected):
    rows = gate_rows(gates, health, done=done_failed[0], failed=done_failed[1], class_p95_ms=20.0)
    states = _states(rows)
    for name, state in expected.items():
        assert states[name] == state, (name, rows)


def test_gate_rows_show_the_class_envelope_when_no_absolute_ceiling_is_set():
    rows = gate_rows(
        _gates(min_requests=1),
        StageHealth(requests=10, latency_p95_ms=25.0, reporting_devices=1),
        done=1,
        failed=0,
        class_p95_ms=20.0,
    )
    latency = next(r for r in rows if r.name == "latency_p95_ms")
    assert (latency.value, latency.threshold, latency.state) == (25.0, 20.0, "breach")
    assert "class envelope" in latency.label


def test_rollback_progress():
    def report(active):
        return {"slots": {"default": {"active": active}}}

    reports = [("d1", report("v1")), ("d2", report("v2")), ("d3", None), ("d4", report("v1"))]
    assert rollback_progress(reports, slot="default", target="v2", previous="v1") == {
        "rolled_back": 2,
        "still_on_new": 1,
        "other": 1,
    }


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
