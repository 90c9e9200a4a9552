"""The update window on the device: downloads any time, the switch only inside the window (real files, real
ONNX models, an injected clock)."""

from __future__ import annotations

from datetime import timedelta

import msgspec
import pytest
from crash.artifacts import classifier, desired
from tests.agent.test_install import Env, serves

from edgefleet.agent.install.journal import Journal

BERLIN_WINDOW = "02:00-03:00 local"  # the clock starts 2030-01-01 00:00 UTC: 01:00 in Berlin, closed


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    yield e
    for inst in e.installers:
        inst.close()


def _upgrade(env, *, window: str = BERLIN_WINDOW, exempt: tuple[str, ...] = ()):
    state = desired({"default": env.artifact("a2", classifier(2), release_counter=2)}, generation=2)
    return msgspec.structs.replace(state, update_window=window, window_exempt_slots=list(exempt))


def test_outside_the_window_it_downloads_but_switches_only_when_the_window_opens(env):
    inst = env.installer(time_zone="Europe/Berlin")
    inst.apply(desired({"default": env.artifact("a1", classifier(1))}))  # nothing served yet: at once
    inst.apply(_upgrade(env))
    report = inst.slot_reports()["default"]
    assert env.fetches == ["a1", "a2"]  # downloaded now
    assert (report.active, report.state, report.behind, report.retrying) == (
        "a1", "pending:window", "pending:window", False,
    )  # fmt: skip
    assert report.failed_artifact is None  # waiting is never a failure
    assert serves(inst, classifier(1))
    assert not inst.wants_retry()
    inst.apply(_upgrade(env))  # a new poll while closed: nothing is redone
    assert env.fetches == ["a1", "a2"]
    env.clock.advance(3600)  # 02:00 in Berlin: open
    assert inst.wants_retry()
    assert inst.retry()
    report = inst.slot_reports()["default"]
    assert (report.active, report.previous, report.behind) == ("a2", "a1", None)
    assert serves(inst, classifier(2))
    assert env.fetches == ["a1", "a2"]  # the staged version was reused, not downloaded again
    events = [r.get("event") for r in Journal(env.data / "journal" / "default.jsonl").read()]
    assert "deferred" in events


def test_the_window_is_read_in_the_devices_zone(env):
    inst = env.installer(time_zone="UTC")  # 00:00 UTC: closed in UTC too; 23:00-01:00 UTC is open
    inst.apply(desired({"default": env.artifact("a1", classifier(1))}))
    inst.apply(_upgrade(env, window="23:00-01:00"))
    assert inst.slot_reports()["default"].active == "a2"


def test_an_urgent_rollout_switches_whatever_the_window(env):
    inst = env.installer(time_zone="Europe/Berlin")
    inst.apply(desired({"default": env.artifact("a1", classifier(1))}))
    inst.apply(_upgrade(env, exempt=("default",)))
    assert inst.slot_reports()["default"].active == "a2"


def test_a_restart_while_waiting_keeps_waiting_without_downloading_again(env):
    inst = env.installer(time_zone="Europe/Berlin")
    inst.apply(desired({"default": env.artifact("a1", classifier(1))}))
    inst.apply(_upgrade(env))
    inst = env.installer(time_zone="Europe/Berlin")  # the agent restarts
    inst.apply(_upgrade(env))
    report = inst.slot_reports()["default"]
    assert (report.active, report.state) == ("a1", "pending:window")
    assert env.fetches == ["a1", "a2"]
    env.clock.now += timedelta(hours=1)
    assert inst.retry()
    assert inst.slot_reports()["default"].active == "a2"
