"""The fleet simulator's own behaviour, with a fake link (the real signed link is exercised in
tests/rollouts)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from edgefleet.protocol.errors import ServiceUnavailableError
from edgefleet.sim.device import Behaviour, SimDevice
from edgefleet.sim.fleet import Outage, SimFleet, plan_outages
from edgefleet.sim.link import DesiredView, view_of

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


class FakeLink:
    def __init__(self, slots: dict[str, str], generation: int = 1) -> None:
        self.slots, self.generation = slots, generation
        self.reports: list[dict[str, Any]] = []
        self.batches: list[dict[str, Any]] = []
        self.down = False

    def poll(self, held_generation: int | None) -> DesiredView | None:
        if self.down:
            raise ServiceUnavailableError("down", code="server_unreachable")
        if held_generation == self.generation:
            return None
        return DesiredView(self.generation, dict(self.slots), {a: f"digits/{a}" for a in self.slots.values()})

    def report(self, body: dict[str, Any]) -> None:
        self.reports.append(body)

    def send_telemetry(self, batch: dict[str, Any]) -> None:
        self.batches.append(batch)


def test_a_device_installs_what_it_is_told_reports_once_and_names_telemetry_by_version() -> None:
    link = FakeLink({"default": "v1"})
    device = SimDevice("dev_1", link)
    behaviour = Behaviour(latency_factor={"v2": 3.0}, requests_per_window=10, jitter=0.0)
    device.step(behaviour, now=NOW, window_s=30)
    device.step(behaviour, now=NOW, window_s=30)
    assert device.active == "v1"
    assert [r["slots"]["default"]["active"] for r in link.reports] == ["v1"]  # no change, no new report
    model = link.batches[-1]["records"][0]["window"]["models"][0]
    assert (model["model_version"], model["requests"]) == ("digits/v1", 10)
    link.slots, link.generation = {"default": "v2"}, 2
    result = device.step(behaviour, now=NOW, window_s=30)
    assert (result.switched_to, device.active) == ("v2", "v2")
    latency = link.batches[-1]["records"][0]["window"]["models"][0]["latency"]
    assert latency["max_ms"] == pytest.approx(36.0)  # 3x the 12 ms base
    assert [b["records"][0]["sequence"] for b in link.batches] == [1, 2, 3]


def test_a_failing_artifact_is_reported_failed_and_the_old_one_kept() -> None:
    link = FakeLink({"default": "v1"})
    device = SimDevice("dev_1", link)
    behaviour = Behaviour(failing=frozenset({"bad"}), quiet=frozenset({"v1"}))
    device.step(behaviour, now=NOW, window_s=30)
    link.slots, link.generation = {"default": "bad"}, 2
    result = device.step(behaviour, now=NOW, window_s=30)
    assert (result.failed, device.active) == ("bad", "v1")
    slot = link.reports[-1]["slots"]["default"]
    assert slot == {
        "active": "v1",
        "state": "idle",
        "failed_artifact": "bad",
        "failure_code": "health_check_failed",
    }
    assert link.batches == []  # v1 is quiet
    device.step(behaviour, now=NOW, window_s=30)
    assert len(link.reports) == 2  # the failure is not retried or re-reported every poll


def test_outages_are_seeded_and_bounded() -> None:
    ids = [f"dev_{i}" for i in range(100)]
    plan = plan_outages(ids, fraction=0.2, horizon=10, min_length=2, max_length=5, seed=3)
    assert plan == plan_outages(ids, fraction=0.2, horizon=10, min_length=2, max_length=5, seed=3)
    assert len(plan) == 20
    assert all(0 <= o.start < 10 and 2 <= o.end - o.start <= 5 for o in plan.values())
    assert plan != plan_outages(ids, fraction=0.2, horizon=10, min_length=2, max_length=5, seed=4)
    with pytest.raises(ValueError):
        plan_outages(ids, fraction=1.5, horizon=10, min_length=2, max_length=5, seed=3)


def test_offline_devices_do_nothing_and_link_errors_are_counted() -> None:
    links = [FakeLink({"default": "v1"}) for _ in range(3)]
    devices = [SimDevice(f"dev_{i}", link) for i, link in enumerate(links)]
    fleet = SimFleet(devices, Behaviour(), outages={"dev_0": Outage(0, 1)})
    links[2].down = True
    results = fleet.step(now=NOW, window_s=30)
    assert [r.online for r in results] == [False, True, True]
    assert (links[0].reports, len(links[1].reports), fleet.errors) == ([], 1, 1)
    fleet.step(now=NOW, window_s=30)
    assert len(links[0].reports) == 1  # back online at interval 1
    assert fleet.running("v1") == ["dev_0", "dev_1"]


def test_view_of_a_signed_envelope() -> None:
    envelope = {
        "signed": {
            "generation": 4,
            "slots": {
                "default": {
                    "artifact_id": "art_1",
                    "manifest": {
                        "path": "digits/2.0.0/medical-cart-cpu/manifest.json",
                        "length": 812,
                        "hashes": {"sha256": "ab" * 32},
                    },
                }
            },
        }
    }
    assert view_of(envelope) == DesiredView(4, {"default": "art_1"}, {"art_1": "digits/2.0.0"})
