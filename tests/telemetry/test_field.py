"""Field telemetry through the real ASGI app (SQLite and PostgreSQL): input faults apart from model errors,
each slot's last success and update status, "requests but no success" marks a device unhealthy, a sudden rise
in input faults is its own signal, and /metrics shows both."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from edgefleet.server.services.field_health import (
    FaultCounts,
    FieldPolicy,
    input_fault_surge,
    slot_problems,
)

from .conftest import Fleet

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
POLICY = FieldPolicy(no_success_after_s=600, min_requests=10)


def _slot(request_ago_s: float | None, success_ago_s: float | None, requests: int = 50) -> dict[str, object]:
    def at(ago: float | None) -> str | None:
        return None if ago is None else (NOW - timedelta(seconds=ago)).isoformat()

    return {"last_request_at": at(request_ago_s), "last_success_at": at(success_ago_s), "requests": requests}


def test_requests_without_success_for_n_minutes_is_unhealthy_idle_is_not() -> None:
    assert slot_problems(_slot(5, 30), now=NOW, policy=POLICY) == []
    assert slot_problems(_slot(5, 601), now=NOW, policy=POLICY) == ["no_success"]
    assert slot_problems(_slot(5, None, requests=9), now=NOW, policy=POLICY) == []
    assert slot_problems(_slot(5, None, requests=10), now=NOW, policy=POLICY) == ["no_success"]
    assert slot_problems(_slot(3600, 7200), now=NOW, policy=POLICY) == []  # quiet site: not this rule
    assert slot_problems(_slot(None, None), now=NOW, policy=POLICY) == []


def test_input_fault_surge_is_judged_against_the_devices_own_baseline() -> None:
    quiet = FaultCounts(input_faults=1, requests=999)
    assert input_fault_surge(FaultCounts(40, 60), quiet, POLICY)
    assert not input_fault_surge(FaultCounts(19, 0), quiet, POLICY)  # too few to call
    assert not input_fault_surge(FaultCounts(40, 960), quiet, POLICY)  # 4 %: below the share
    noisy = FaultCounts(input_faults=300, requests=700)  # this sensor is always this bad
    assert not input_fault_surge(FaultCounts(40, 60), noisy, POLICY)


def test_input_faults_count_apart_and_field_status_reaches_views_and_metrics(fleet: Fleet) -> None:
    device = fleet.device()
    other = fleet.device()
    rec = device.recorder
    rec.set_slot_states(lambda: {"default": ("trial", None)})
    for _ in range(30):
        rec.record_request("digits/1", "preferred", 2.0)
    rec.record_request("digits/1", "preferred", 2.0, "inference_failed")
    other.recorder.record_request("digits/1", "preferred", 2.0)
    fleet.clock.advance(61)
    success_at = fleet.clock()
    rec.record_request("digits/1", "preferred", 2.0)
    for _ in range(25):
        rec.record_request("digits/1", "preferred", 0.0, "input_not_finite")
    for _ in range(15):
        rec.record_request("digits/1", "preferred", 0.0, "tensor_shape_mismatch")
    fleet.clock.advance(61)
    for d in (device, other):
        d.recorder.tick()
        d.drain()

    health = fleet.health(since=(fleet.clock() - timedelta(minutes=10)).isoformat())
    totals = health["totals"]
    assert totals["requests"] == 33
    assert totals["errors_by_code"] == {"inference_failed": 1}  # the failing sensor is not an error
    assert totals["input_faults_by_code"] == {"input_not_finite": 25, "tensor_shape_mismatch": 15}
    assert health["field"]["input_fault_surge_ids"] == [device.id]
    assert health["field"]["unhealthy"] == 0

    view = fleet.device_telemetry(device.id)
    slot = view["field"]["slots"]["default"]
    assert datetime.fromisoformat(slot["last_success_at"]) == success_at
    assert slot["update_status"] == "trial"
    assert slot["errors_by_kind"] == {"input": 40, "model": 1}
    assert slot["problems"] == []
    assert view["field"]["input_faults"]["surge"] is True
    assert view["field"]["resources"] is None or "disk_free_bytes" in view["field"]["resources"]

    # Eleven minutes of requests that all fail on their input: the device is unhealthy.
    for _ in range(11):
        rec.record_request("digits/1", "preferred", 0.0, "input_not_finite")
        fleet.clock.advance(60)
    rec.tick()
    device.drain()
    health = fleet.health(since=(fleet.clock() - timedelta(minutes=10)).isoformat())
    assert health["field"]["unhealthy_ids"] == [device.id]
    view = fleet.device_telemetry(device.id)
    assert view["field"]["unhealthy"] is True
    assert view["field"]["slots"]["default"]["problems"] == ["no_success"]
    assert datetime.fromisoformat(view["field"]["slots"]["default"]["last_success_at"]) == success_at
    text = fleet.client.get("/metrics", headers=fleet.admin).text
    assert "edgefleet_devices_unhealthy 1" in text
    assert 'edgefleet_fleet_input_faults{model_version="digits/1"}' in text
