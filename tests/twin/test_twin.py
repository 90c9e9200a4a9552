"""The twin: a rollout spec on a described fleet, decided by the real rollout policy in virtual time."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.server.services.twin.fleet import FleetSpec, UpdateWindow, parse_fleet, parse_fleet_toml
from edgefleet.server.services.twin.health import mixture_p95_ms
from edgefleet.server.services.twin.plan import parse_rollout_spec, plan
from edgefleet.server.services.twin.population import draw_population
from edgefleet.server.services.twin.run import simulate, window_open_at

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "twin"


def _fleet(**cls: Any) -> FleetSpec:
    base: dict[str, Any] = {
        "devices": 200,
        "sites": 4,
        "poll_s": 60,
        "requests_per_s": 2,
        "current": {"latency_p95_ms": 10},
        "candidate": {"latency_p95_ms": 10},
    }
    return parse_fleet(
        {"horizon_s": 3 * 86400, "tick_s": 60, "classes": {"medical-cart-cpu": {**base, **cls}}}
    )


def _spec(**gates: Any) -> Any:
    stage = {"soak_s": 600, "deadline_s": 3600, "gates": gates}
    return parse_rollout_spec(
        {"stages": [{"count": 2, **stage}, {"percent": 25, **stage}, {"percent": 100, **stage}]}
    )


# --- bad input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"install_failure_rate": -0.1}, "classes.medical-cart-cpu.install_failure_rate"),
        ({"outages": {"fraction": 1.5}}, "classes.medical-cart-cpu.outages.fraction"),
        ({"throttle_share": 2}, "classes.medical-cart-cpu.throttle_share"),
        ({"devices": -3}, "classes.medical-cart-cpu.devices"),
        ({"link": {"min_mbps": 0}}, "classes.medical-cart-cpu.link.min_mbps"),
        ({"candidate": {"error_rate": 1.2}}, "classes.medical-cart-cpu.candidate.error_rate"),
        ({"update_window": "2am to 4am"}, "classes.medical-cart-cpu.update_window"),
        ({"colour": "red"}, "classes.medical-cart-cpu.colour"),
    ],
)
def test_impossible_fleet_values_name_the_field(patch: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidDocumentError) as info:
        parse_fleet({"classes": {"medical-cart-cpu": {"devices": 10, **patch}}})
    assert info.value.code == "invalid_fleet"
    assert info.value.details["field"] == field
    assert field in str(info.value)


def test_unknown_classes_are_refused() -> None:
    with pytest.raises(InvalidDocumentError) as info:
        parse_fleet({"classes": {"a": {"devices": 1}}, "scenario": {"bad_classes": ["b"]}})
    assert info.value.code == "invalid_fleet"
    assert info.value.details["field"] == "scenario.bad_classes"
    with pytest.raises(InvalidDocumentError) as info:
        parse_fleet({"classes": {"toaster": {"devices": 1}}}, known_classes={"medical-cart-cpu"})
    assert info.value.code == "unknown_hardware_class"
    assert info.value.details["field"] == "classes.toaster"


def test_malformed_toml() -> None:
    with pytest.raises(InvalidDocumentError) as info:
        parse_fleet_toml("classes = [")
    assert info.value.code == "malformed_toml"


def test_a_spec_the_api_refuses_is_refused_with_the_api_code() -> None:
    with pytest.raises(InvalidDocumentError) as info:
        parse_rollout_spec({"stages": [{"percent": 150}]})
    assert info.value.code == "invalid_document"
    assert info.value.details["errors"][0]["field"] == "spec.stages.0.percent"
    with pytest.raises(InvalidDocumentError) as info:
        parse_rollout_spec({"stages": [{"count": 1, "percent": 5}]})
    assert info.value.code == "invalid_document"


# --- the model's pieces ---------------------------------------------------------------------------------


def test_windows_and_online_time() -> None:
    monday = datetime(2026, 11, 30, tzinfo=timezone.utc)  # a Monday, 00:00 UTC
    window = UpdateWindow.parse("02:00-04:00")
    assert window_open_at(window, "UTC", monday, 0) == 2 * 3600  # midnight -> 02:00
    assert window_open_at(window, "UTC", monday, 3 * 3600) == 3 * 3600  # inside
    assert window_open_at(window, "UTC", monday, 5 * 3600) == 26 * 3600  # after: tomorrow
    wrap = UpdateWindow.parse("22:00-05:00 local")
    assert window_open_at(wrap, "UTC", monday, 60) == 60
    # local means the device's zone: 02:00 in Berlin (UTC+1 in winter) is 01:00 UTC
    assert window_open_at(window, "Europe/Berlin", monday, 0) == 1 * 3600
    assert window_open_at(UpdateWindow.parse("Sun 01:00-05:00"), "UTC", monday, 0) == 6 * 86400 + 3600
    assert UpdateWindow.parse("any") is None
    fleet = _fleet(outages={"fraction": 1.0, "pattern": "nightly", "from_hour": 22, "to_hour": 6})
    device = draw_population(fleet, 1).devices[0]
    assert not device.online(3600)
    assert device.online(7 * 3600)
    assert device.next_poll(3600) == 6 * 3600  # offline: the poll on reconnecting
    assert device.online_advance(20 * 3600, 3 * 3600) == 31 * 3600  # 2 h online, 8 h off, 1 h online


def test_throttled_devices_raise_the_p95() -> None:
    assert mixture_p95_ms(10, devices=10, throttled=0, factor=2) == pytest.approx(10, rel=1e-6)
    assert mixture_p95_ms(10, devices=10, throttled=10, factor=2) == pytest.approx(20, rel=1e-6)
    assert 10 < mixture_p95_ms(10, devices=10, throttled=1, factor=2) < 20


# --- runs -----------------------------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_run_and_another_seed_another_fleet() -> None:
    fleet = _fleet(outages={"fraction": 0.3, "per_week": 5}, link={"min_mbps": 1, "max_mbps": 50})
    a = simulate(fleet, _spec(), seed=3)
    assert a == simulate(fleet, _spec(), seed=3)
    assert a["outcome"] == "completed"
    assert simulate(fleet, _spec(), seed=4)["bytes_sent"] == a["bytes_sent"]  # everyone downloads once
    assert simulate(fleet, _spec(), seed=4)["series"] != a["series"]


def test_a_bad_model_halts_with_its_gate_and_rolls_back() -> None:
    fleet = _fleet(candidate={"latency_p95_ms": 10, "error_rate": 0.05})
    result = simulate(fleet, _spec(max_error_rate=0.01), seed=1)
    assert result["outcome"] == "halted"
    assert result["halt"]["gate"] == "error_rate"
    assert result["halt"]["stage"] == 0
    assert result["halt"]["hardware_class"] == "medical-cart-cpu"
    assert result["rollback"]["devices"] == result["exposure"]["peak_devices"] == 2
    assert result["rollback"]["still_on_candidate"] == 0
    assert result["exposure"]["duration_s"] > 0
    assert [s["action"] for s in result["stages"]] == ["halt"]


def test_offline_devices_are_pending_at_the_deadline_with_why() -> None:
    fleet = _fleet(
        outages={"fraction": 0.2, "pattern": "always"},
        update_window="02:00-03:00",
        link={"min_mbps": 0.01, "max_mbps": 0.02},
        artifact_bytes=2_000_000,
    )
    result = simulate(fleet, _spec(max_install_failure_rate=1), seed=2)
    last = next(d for d in result["deadlines"] if d["stage"] == 2)
    assert last["why"]["offline"] == 40  # 20 % never come back
    assert result["outcome"] == "completed"
    assert result["not_converged"]["devices"] == 40
    assert result["not_converged"]["why"]["offline"] == 40
    early = result["deadlines"][0]
    assert early["pending"] == early["why"]["slow_link"] + early["why"]["window"] + early["why"]["poll"]


def test_install_failures_and_throttling_reach_their_gates() -> None:
    failing = simulate(_fleet(install_failure_rate=0.5), _spec(max_install_failure_rate=0.1), seed=5)
    assert failing["halt"]["gate"] == "install_failure_rate"
    hot = _fleet(throttle_share=0.5, throttle_factor=3.0)
    slow = simulate(hot, _spec(max_latency_p95_ms=15, max_latency_p95_ratio=None), seed=5)
    assert slow["halt"]["gate"] == "latency_p95_ms"
    assert simulate(_fleet(), _spec(max_latency_p95_ms=15), seed=5)["outcome"] == "completed"


def test_a_shadow_stage_judges_agreement_before_anyone_is_served() -> None:
    fleet = _fleet(candidate={"latency_p95_ms": 10, "shadow_agreement": 0.7})
    stage = {"soak_s": 600, "deadline_s": 3600}
    spec = parse_rollout_spec(
        {"stages": [{"count": 5, "shadow": True, **stage, "gates": {"min_shadow_agreement": 0.9}},
                    {"percent": 100, **stage}]}
    )  # fmt: skip
    result = simulate(fleet, spec, seed=1)
    assert result["halt"]["gate"] == "shadow_agreement"
    assert result["exposure"]["peak_devices"] == 0  # shadowed, never served
    good = simulate(_fleet(), spec, seed=1)
    assert good["outcome"] == "completed"
    assert good["converged_at_s"] is not None


def test_compare_runs_two_policies_on_the_same_fleet() -> None:
    fleet = _fleet(candidate={"latency_p95_ms": 10, "error_rate": 0.05})
    careful = _spec(max_error_rate=0.01)
    reckless = parse_rollout_spec(
        {"stages": [{"percent": 100, "soak_s": 600, "gates": {"max_error_rate": 0.01}}]}
    )
    result = plan(fleet, careful, compare=reckless, seed=9)
    a, b = result["runs"]
    assert a["halt"]["gate"] == b["halt"]["gate"] == "error_rate"
    assert a["exposure"]["peak_devices"] < b["exposure"]["peak_devices"]
    json.dumps(result)  # the wire form is plain JSON


@pytest.mark.parametrize("candidate", [{"error_rate": 0.05}, {"latency_p95_ms": 14}, {"latency_p95_ms": 10}])
def test_skipping_unchanged_waits_never_changes_a_decision(candidate: dict[str, Any]) -> None:
    fleet = _fleet(
        devices=60,
        candidate={"latency_p95_ms": 10, **candidate},
        outages={"fraction": 0.3, "per_week": 10, "min_s": 600, "max_s": 7200},
        install_failure_rate=0.05,
        update_window="01:00-05:00",
    )
    spec = _spec(max_install_failure_rate=0.2, max_latency_p95_ratio=1.3)
    assert simulate(fleet, spec, seed=2, ask_every_tick=True) == simulate(fleet, spec, seed=2)


def test_the_example_files_run() -> None:
    fleet = parse_fleet_toml((EXAMPLES / "fleet.toml").read_text())
    spec = parse_rollout_spec(json.loads((EXAMPLES / "rollout.json").read_text()))
    result = simulate(fleet, spec)
    assert result["devices"] == 1000
    assert result["stages"][0]["members"] == 5


def test_exposure_counts_the_classes_the_candidate_is_bad_on() -> None:
    both = {"devices": 50, "poll_s": 60, "requests_per_s": 2, "current": {"latency_p95_ms": 10}}
    fleet = parse_fleet(
        {
            "horizon_s": 86400,
            "scenario": {"bad_model": True, "bad_classes": ["medical-cart-cpu"]},
            "classes": {
                "medical-cart-cpu": {**both, "candidate": {"latency_p95_ms": 10, "error_rate": 0.5}},
                "jetson-vision-standard": {**both, "candidate": {"latency_p95_ms": 10}},
            },
        }
    )
    result = simulate(fleet, parse_rollout_spec({"stages": [{"percent": 100, "soak_s": 600}]}), seed=1)
    assert result["halt"]["hardware_class"] == "medical-cart-cpu"
    assert result["exposure"]["classes"] == ["medical-cart-cpu"]
    assert 0 < result["exposure"]["peak_devices"] <= 50 < result["rollback"]["devices"]
