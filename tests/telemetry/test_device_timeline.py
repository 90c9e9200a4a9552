"""One device over time, from its real uploads (SQLite and PostgreSQL): versions and rungs served, install
steps, temperature and memory pressure, its last success, and connectivity: a silent period while it was
offline and the windows it buffered meanwhile, arriving late when it came back."""

from __future__ import annotations

from datetime import timedelta

from edgefleet.agent.telemetry import TelemetryRecorder
from edgefleet.agent.telemetry.resources import FixedResources
from edgefleet.protocol.wire.telemetry import ResourceSample
from edgefleet.server.services.device_timeline import device_timeline, gaps
from edgefleet.server.services.health_history import resolve_range

from .conftest import Fleet


def test_a_device_timeline_shows_what_it_served_its_pressure_and_its_silence(fleet: Fleet) -> None:
    d = fleet.device()
    d.recorder = TelemetryRecorder(
        d.queue,
        boot_id="boot1",
        window_s=60,
        clock=lambda: fleet.clock.mono,
        wall_clock=d.wall,
        resources=FixedResources(
            ResourceSample(cpu_temp_c=71.5, mem_total_bytes=1000, mem_available_bytes=250)
        ),
    )
    d.recorder.record_event("update", "install_committed", {"artifact": "art_1"})
    for _ in range(5):  # five online minutes, uploaded as they close
        d.recorder.record_request("1.0.0", "cpu", 5.0, None)
        fleet.clock.advance(61)
        d.recorder.tick()
        d.drain()
    for _ in range(3):  # offline: windows buffered on the device
        d.recorder.record_request("1.0.0", "fallback", 9.0, None)
        fleet.clock.advance(61)
        d.recorder.tick()
    fleet.clock.advance(20 * 60)  # then nothing at all for twenty minutes
    d.recorder.tick()
    d.drain()  # back online: the buffered windows arrive late
    now = fleet.clock()
    with fleet.app.state.context.db.session() as session:
        timeline = device_timeline(
            session, d.id, history_range=resolve_range("hour", None, None, now=now, retention_s=86400 * 30)
        )
    assert timeline["empty"] is False
    versions = timeline["series"]["requests_by_version"]
    assert sum(v or 0 for v in versions["1.0.0"]) == 8
    rungs = timeline["series"]["requests_by_rung"]
    assert sum(v or 0 for v in rungs["cpu"]) == 5
    assert sum(v or 0 for v in rungs["fallback"]) == 3
    assert max(v for v in timeline["series"]["cpu_temp_c"]["temperature"] if v is not None) == 71.5
    assert max(v for v in timeline["series"]["memory_pressure"]["memory used"] if v is not None) == 0.75
    assert [s["code"] for s in timeline["install_steps"]] == ["install_committed"]
    assert len(timeline["buffered"]) >= 3
    assert all(b["late_s"] >= 120 for b in timeline["buffered"])
    assert any(g["silent_s"] >= 19 * 60 for g in timeline["silent"])
    assert timeline["last_success_at"] is not None


def test_gaps_are_the_uncovered_stretches_longer_than_the_threshold(fleet: Fleet) -> None:
    start = fleet.clock()
    minute = timedelta(minutes=1)
    spans = [
        (start, start + minute),
        (start + 2 * minute, start + 3 * minute),
        (start + 9 * minute, start + 10 * minute),
    ]
    found = gaps(spans, start=start, end=start + 15 * minute, silent_after_s=180)
    assert [(g["from"], g["to"]) for g in found] == [
        ((start + 3 * minute).isoformat(), (start + 9 * minute).isoformat()),
        ((start + 10 * minute).isoformat(), (start + 15 * minute).isoformat()),
    ]
