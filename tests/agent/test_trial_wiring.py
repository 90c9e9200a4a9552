"""The trial as `agent run` wires it: which served requests count for the version on trial, the watchdog
fed by the serving layer, and the trial settings (real installer, real serving, real ONNX models)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from crash.artifacts import assignment, classifier, desired, write_artifact
from tests.agent.clock import Clock
from tests.serve.conftest import Faults, FaultyAdapter, RecordingMetrics

from edgefleet.agent.app import DEFAULT_WATCHDOG_S, AgentOptions
from edgefleet.agent.install import InstallerConfig, LocalDirFetcher, SlotInstaller, TrialPolicy, trial_sample
from edgefleet.agent.serve import (
    InferenceService,
    LadderPolicy,
    Liveness,
    RuleConfig,
    ServingConfig,
    SlotActiveSource,
)
from edgefleet.agent.serve.endpoint import EndpointConfig
from edgefleet.agent.serving_wiring import TrialMetrics, serving_alive, start_serving
from edgefleet.protocol.errors import InvalidDocumentError

GPU = ("CUDAExecutionProvider", "CPUExecutionProvider")
X = {"x": np.zeros((1, 16), dtype=np.float32)}


class World:
    """a1 committed, then a2 (version 2.0.0) switched in and on trial, in slot ``slot``."""

    def __init__(self, tmp_path, trial: TrialPolicy, *, slot: str = "default", **config) -> None:
        self.data = tmp_path / "data"
        self.artifacts = tmp_path / "artifacts"
        self.clock = Clock()
        self.trial = trial
        self.config = config
        self.slot = slot
        self.installers: list[SlotInstaller] = []
        a1 = assignment("a1", write_artifact(self.artifacts, "a1", classifier(1), providers=GPU))
        self.a2 = assignment(
            "a2",
            write_artifact(
                self.artifacts, "a2", classifier(2), version="2.0.0", release_counter=2, providers=GPU
            ),
        )
        first = self.installer(TrialPolicy(window_s=0))
        first.apply(desired({slot: a1}))
        self.inst = self.installer(trial)
        self.inst.apply(desired({slot: self.a2}, generation=2))
        assert self.state() == "trial"

    def installer(self, trial: TrialPolicy | None = None) -> SlotInstaller:
        for old in self.installers:
            old.close()
        inst = SlotInstaller(
            self.data,
            LocalDirFetcher(self.artifacts),
            FaultyAdapter(Faults()),
            config=InstallerConfig(trial=trial or self.trial, **self.config),
            now=self.clock,
        )
        inst.recover()
        self.installers.append(inst)
        self.inst = inst
        return inst

    def state(self) -> str:
        return self.inst.slot_reports()[self.slot].state

    def close(self) -> None:
        for inst in self.installers:
            inst.close()


@pytest.fixture
def world_factory(tmp_path):
    made: list[World] = []

    def make(trial: TrialPolicy, **kw) -> World:
        made.append(World(tmp_path, trial, **kw))
        return made[-1]

    yield make
    for w in made:
        w.close()


# --- which answers count --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rung", "version", "error", "counted"),
    [
        ("preferred", "digits/2.0.0", None, True),
        ("preferred", "digits/2.0.0", "inference_failed", False),
        ("cpu", "digits/2.0.0", None, True),  # the same version on the CPU provider: fine
        ("fallback", "digits-small/0.1.0", None, False),  # the fallback answered: the trial version did not
        ("rule", "rule", None, False),
        ("rule", "rule", "inference_deferred", False),
        ("preferred", "digits/1.0.0", None, None),  # the old version, before serving picked up the switch
        ("cpu", "digits/1.0.0", "inference_failed", None),
    ],
)
def test_how_a_served_request_counts_for_the_version_on_trial(rung, version, error, counted):
    assert trial_sample(rung, version, error, "digits/2.0.0") is counted


def test_answers_from_the_fallback_rung_or_the_rule_fail_the_version_on_trial(world_factory):
    world = world_factory(TrialPolicy(window_s=600, max_failure_rate=0.2, min_requests_for_rate=10))
    assert world.inst.on_trial("default") == "digits/2.0.0"
    faults = Faults()
    recorded = RecordingMetrics()
    config = ServingConfig(
        ladder=LadderPolicy(failures_to_descend=1, probe_initial_s=3600, probe_max_s=3600),
        rule=RuleConfig(kind="fixed", outputs={"probs": [0.25, 0.25, 0.25, 0.25]}),
    )
    service = InferenceService(
        SlotActiveSource(world.data),
        FaultyAdapter(faults),
        config,
        metrics=TrialMetrics(recorded, world.inst, "default"),
    )
    for _ in range(4):
        assert service.predict(X).mode == "preferred"
    faults.broken_providers = {"CUDAExecutionProvider"}  # the GPU provider raises: the same version on CPU
    for _ in range(6):
        answer = service.predict(X)
        assert (answer.mode, answer.model_version) == ("cpu", "digits/2.0.0")
    world.inst.tick()
    trial = world.inst._slots["default"].trial
    assert (trial.requests, trial.failures) == (10, 0)
    assert world.state() == "trial"

    faults.broken_providers = {"CUDAExecutionProvider", "CPUExecutionProvider"}  # no rung of a2 works
    for _ in range(3):
        assert service.predict(X).mode == "rule"  # a safe answer, but not one from the version on trial
    world.inst.tick()
    report = world.inst.slot_reports()["default"]
    assert (report.active, report.state) == ("a1", "rolled_back:trial_failure_rate")
    assert (report.failed_artifact, report.failure_code) == ("a2", "trial_failure_rate")
    # telemetry saw every request, with the rung that answered it
    assert [r[1] for r in recorded.requests].count("rule") == 3


def test_requests_answered_by_another_version_are_not_counted(world_factory):
    world = world_factory(TrialPolicy(window_s=600, max_failure_rate=0.0, min_requests_for_rate=1))
    metrics = TrialMetrics(RecordingMetrics(), world.inst, "default")
    metrics.record_request("digits/1.0.0", "preferred", 1.0, "inference_failed")  # the old version
    metrics.record_request("digits/2.0.0", "preferred", 1.0)
    world.inst.tick()
    assert world.state() == "trial"
    assert (world.inst._slots["default"].trial.requests, world.inst._slots["default"].trial.failures) == (
        1,
        0,
    )


# --- the watchdog -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rung", "in_flight", "since_s", "alive"),
    [
        ("preferred", 0, 999.0, True),  # idle is alive
        ("cpu", 1, 0.5, True),
        ("preferred", 2, 11.0, False),  # runs held with no progress: stuck
        ("fallback", 0, 0.0, False),  # the version on trial is not what answers
        ("rule", 0, 0.0, False),
    ],
)
def test_serving_feeds_the_watchdog_only_when_it_progresses_on_a_model_rung(rung, in_flight, since_s, alive):
    liveness = Liveness(rung=rung, model_version="m/1", in_flight=in_flight, since_progress_s=since_s)
    assert serving_alive(liveness, stall_s=10.0) is alive


def test_the_serving_heartbeat_keeps_a_trial_and_a_hung_model_rolls_it_back(world_factory):
    world = world_factory(TrialPolicy(window_s=600, watchdog_s=30))
    faults = Faults()
    serving = start_serving(
        world.data,
        hardware_class=None,
        metrics=TrialMetrics(RecordingMetrics(), world.inst, "default"),
        endpoint=EndpointConfig(port=0),
        adapter_for=lambda _runtime: FaultyAdapter(faults),
    )
    try:
        assert serving.service.artifact_id == "a2"
        for _ in range(4):  # two minutes of a healthy, serving agent
            serving.service.predict(X)
            world.clock.advance(25)
            assert serving.feed_watchdog(world.inst) is True
            world.inst.tick()
        assert world.state() == "trial"

        faults.hold = threading.Event()  # the next run never returns
        client = threading.Thread(target=serving.service.predict, args=(X,), daemon=True)
        client.start()
        assert faults.entered.acquire(timeout=10)
        time.sleep(0.05)
        assert serving.feed_watchdog(world.inst, stall_s=0.01) is False
        world.clock.advance(31)
        world.inst.tick()
        assert world.state() == "rolled_back:trial_watchdog"
        assert world.inst.serving("default") == "a1"
    finally:
        if faults.hold is not None:
            faults.hold.set()
        serving.close()


def test_a_long_power_cut_during_the_trial_is_a_restart_not_a_watchdog_timeout(world_factory):
    world = world_factory(TrialPolicy(window_s=600, watchdog_s=30, max_restarts=1))
    world.clock.advance(300)  # powered off for five minutes: ten watchdog periods
    world.installer()
    assert world.state() == "trial"
    world.clock.advance(31)  # and silent after the restart: now the watchdog fires
    world.inst.tick()
    assert world.state() == "rolled_back:trial_watchdog"


def test_the_watchdog_and_min_requests_apply_only_to_the_served_slot(world_factory):
    world = world_factory(
        TrialPolicy(window_s=600, watchdog_s=30, min_requests=50),
        slot="fallback",
        served_slots=frozenset({"default"}),
    )
    world.clock.advance(120)  # nothing heartbeats the fallback slot, and nothing is served from it
    world.inst.tick()
    assert world.state() == "trial"
    world.clock.advance(600)
    world.inst.tick()
    assert world.state() == "committed"


# --- settings ---------------------------------------------------------------------------------------------


def test_agent_run_turns_the_watchdog_on_for_the_served_slot():
    config = AgentOptions().installer_config(None)
    assert config.trial.watchdog_s == DEFAULT_WATCHDOG_S
    assert config.served_slots == frozenset({"default"})
    assert config.trial_for("default").watchdog_s == DEFAULT_WATCHDOG_S
    assert config.trial_for("fallback").watchdog_s is None
    unserved = AgentOptions(serve=False, trial=TrialPolicy(watchdog_s=60, min_requests=10)).installer_config(
        None
    )
    assert (unserved.trial.watchdog_s, unserved.trial.min_requests) == (
        None,
        0,
    )  # nothing heartbeats or serves


@pytest.mark.parametrize(
    "bad",
    [
        {"window_s": -1},
        {"min_requests": -1},
        {"max_failure_rate": 1.5},
        {"min_requests_for_rate": 0},
        {"watchdog_s": 0},
        {"max_restarts": -1},
    ],
)
def test_trial_settings_are_validated(bad):
    with pytest.raises(InvalidDocumentError) as err:
        TrialPolicy(**bad)
    assert err.value.code == "invalid_trial_policy"


def test_a_watchdog_shorter_than_three_heartbeats_is_refused():
    with pytest.raises(InvalidDocumentError) as err:
        AgentOptions(trial=TrialPolicy(watchdog_s=2.0), tick_interval_s=1.0)
    assert err.value.code == "invalid_trial_policy"
