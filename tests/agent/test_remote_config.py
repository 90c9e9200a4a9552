"""The agent's side of remote configuration: live settings applied through their setters, removed ones
restored, settings taken at the next start reported as such, and out-of-bounds values refused."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from edgefleet.agent.local_zone import detect_time_zone
from edgefleet.agent.remote_config import ConfigApplier, startup_overrides
from edgefleet.protocol.desired_state import DesiredState
from edgefleet.protocol.errors import InvalidDocumentError


def _state(config, generation: int = 1) -> DesiredState:
    now = datetime.now(timezone.utc)
    return DesiredState(
        device_id="dev-1",
        hardware_class="c",
        generation=generation,
        issued_at=now,
        expires_at=now + timedelta(hours=1),
        config=config,
    )


def _applier(calls: list):
    setters = {
        "poll_interval_s": lambda v: calls.append(("poll", v)),
        "log_level": lambda v: calls.append(("log", v)),
    }
    return ConfigApplier(
        setters, {"poll_interval_s": 30.0, "log_level": "info"}, {"telemetry_max_bytes": 16 * 1024**2}
    )


def test_live_settings_apply_and_removed_ones_return_to_their_start_values():
    calls: list = []
    applier = _applier(calls)
    assert applier.report() is None
    applier.apply(_state({"poll_interval_s": 2, "log_level": "debug"}))
    assert calls == [("log", "debug"), ("poll", 2.0)]
    assert applier.report() == {
        "generation": 1,
        "applied": {"log_level": "debug", "poll_interval_s": 2.0},
        "restart_needed": [],
        "refused": {},
    }
    applier.apply(_state({"poll_interval_s": 2}, generation=2))  # unchanged values are not set again
    assert calls == [("log", "debug"), ("poll", 2.0), ("log", "info")]
    applier.apply(_state(None, generation=3))
    assert calls[-1] == ("poll", 30.0)
    assert applier.report()["applied"] == {}


def test_out_of_bounds_values_are_refused_and_the_running_value_kept():
    calls: list = []
    applier = _applier(calls)
    applier.apply(_state({"poll_interval_s": 5}))
    applier.apply(_state({"poll_interval_s": 0.001, "colour": "red"}, generation=2))
    assert calls == [("poll", 5.0)]  # never set to 1 ms
    report = applier.report()
    assert report["refused"] == {"colour": "unknown_config_key", "poll_interval_s": "config_out_of_bounds"}
    applier.apply(_state({}, generation=3))  # removed: it ran 5 s, it goes back to its start value
    assert calls[-1] == ("poll", 30.0)


def test_settings_taken_at_start_are_reported_until_the_agent_restarts():
    applier = _applier([])
    applier.apply(_state({"telemetry_max_bytes": 1 << 20}))
    assert applier.report()["restart_needed"] == ["telemetry_max_bytes"]
    envelope = {"signed": {"config": {"telemetry_max_bytes": 1 << 20, "poll_interval_s": 3}}}
    assert startup_overrides(envelope) == {"telemetry_max_bytes": 1 << 20}  # live ones are not start-only
    assert startup_overrides({"signed": {"config": {"telemetry_max_bytes": 1}}}) == {}  # out of bounds
    restarted = ConfigApplier({}, {}, startup_overrides(envelope))
    restarted.apply(_state({"telemetry_max_bytes": 1 << 20}))
    assert restarted.report()["applied"] == {"telemetry_max_bytes": 1 << 20}
    assert restarted.report()["restart_needed"] == []


def test_the_time_zone_comes_from_the_flag_tz_or_etc(tmp_path: Path):
    assert detect_time_zone("Europe/Berlin") == "Europe/Berlin"
    with pytest.raises(InvalidDocumentError) as info:
        detect_time_zone("Mars/Olympus")
    assert info.value.code == "invalid_time_zone"
    assert detect_time_zone(env={"TZ": ":Asia/Tokyo"}, etc=tmp_path) == "Asia/Tokyo"
    (tmp_path / "timezone").write_text("America/Chicago\n")
    assert detect_time_zone(env={}, etc=tmp_path) == "America/Chicago"
    (tmp_path / "timezone").write_text("Not/AZone\n")
    (tmp_path / "localtime").symlink_to("/usr/share/zoneinfo/Europe/Lisbon")
    assert detect_time_zone(env={"TZ": "Bogus/Zone"}, etc=tmp_path) == "Europe/Lisbon"
    assert detect_time_zone(env={}, etc=tmp_path / "missing") == "UTC"
