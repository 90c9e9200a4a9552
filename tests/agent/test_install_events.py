"""Journaled install steps reach telemetry as update events: one per step per attempt, with codes and
durations, through the real installer, recorder and SQLite queue."""

from __future__ import annotations

from collections import Counter

import pytest
from crash.artifacts import (
    assignment,
    classifier,
    desired,
    golden_inputs,
    nan_model,
    run_model,
    write_artifact,
)

from edgefleet.agent.install import InstallerConfig, LocalDirFetcher, SlotInstaller, StepRecord, TrialPolicy
from edgefleet.agent.install.journal import STEPS
from edgefleet.agent.observed import ObservedInstaller, StepEvents, step_event
from edgefleet.agent.runtime.ort import OnnxRuntimeAdapter
from edgefleet.agent.telemetry import TelemetryQueue, TelemetryRecorder
from edgefleet.protocol.telemetry import PRIORITY_KEEP


class Device:
    def __init__(self, tmp_path) -> None:
        self.artifacts = tmp_path / "artifacts"
        self.queue = TelemetryQueue(tmp_path / "queue.db")
        self.recorder = TelemetryRecorder(self.queue, boot_id="boot1")
        self.inner = SlotInstaller(
            tmp_path / "data",
            LocalDirFetcher(self.artifacts),
            OnnxRuntimeAdapter(),
            config=InstallerConfig(trial=TrialPolicy(window_s=0)),
            steps=StepEvents(self.recorder),
        )
        self.inner.recover()
        self.installer = ObservedInstaller(self.inner, self.recorder)

    def assign(self, artifact_id: str, model: bytes, generation: int, **kw) -> None:
        kw.setdefault("release_counter", generation)
        manifest = write_artifact(self.artifacts, artifact_id, model, **kw)
        self.installer.apply(desired({"default": assignment(artifact_id, manifest)}, generation=generation))

    def step_events(self) -> list[dict]:
        return [
            r.body
            for r in self.queue.oldest(10_000)
            if r.kind == "event" and r.body["code"].startswith("install_")
        ]

    def close(self) -> None:
        self.inner.close()
        self.queue.close()


@pytest.fixture
def device(tmp_path):
    d = Device(tmp_path)
    yield d
    d.close()


def _by_attempt(events: list[dict]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in events:
        out.setdefault(e["details"]["attempt"], []).append(e["code"])
    return out


def test_every_step_of_each_attempt_is_one_update_event(device):
    device.assign("a1", classifier(1), 1)
    device.assign("a2", classifier(2), 2, version="2.0.0")
    events = device.step_events()
    attempts = _by_attempt(events)
    assert len(attempts) == 2
    for codes in attempts.values():
        assert codes == [f"install_{step}_done" for step in STEPS]  # in journal order, each once
    assert Counter((e["details"]["attempt"], e["details"]["step"]) for e in events).most_common(1)[0][1] == 1
    first = events[0]
    assert first["kind"] == "update"
    assert first["details"]["slot"] == "default"
    assert first["details"]["artifact"] == "a1"
    assert first["details"]["reused"] is False
    assert all(e["details"]["duration_ms"] >= 0 for e in events)
    kept = {r.priority for r in device.queue.oldest(10_000) if r.kind == "event"}
    assert kept == {PRIORITY_KEEP}  # update events are kept over metrics when the queue is full


def test_a_failed_step_is_reported_with_its_code_and_ends_the_attempt(device):
    device.assign("a1", classifier(1), 1)
    device.assign("bad", nan_model(), 2, expected=run_model(classifier(1), golden_inputs(4)))
    [_, failed] = _by_attempt(device.step_events()).values()
    assert failed == [
        "install_download_done",
        "install_verify_done",
        "install_stage_done",
        "install_load_done",
        "install_health_failed",
    ]
    [health] = [e for e in device.step_events() if e["code"] == "install_health_failed"]
    assert health["details"]["error_code"] == "health_output_not_finite"
    assert health["details"]["artifact"] == "bad"


def test_reactivation_from_disk_reports_a_reused_download(device):
    device.assign("a1", classifier(1), 1)
    device.assign("a2", classifier(2), 2, version="2.0.0")
    device.assign("a1", classifier(1), 3, release_counter=1)  # pin back to the previous version, on disk
    last = list(_by_attempt(device.step_events()).values())[-1]
    assert last == [f"install_{step}_done" for step in STEPS]
    downloads = [e for e in device.step_events() if e["details"]["step"] == "download"]
    assert [d["details"]["reused"] for d in downloads] == [False, False, True]


def test_step_event_is_pure_and_bounded():
    kind, code, details = step_event(
        StepRecord("default", "att1", "a1", "verify", ok=False, error_code="hash_mismatch", duration_ms=1.5)
    )
    assert (kind, code) == ("update", "install_verify_failed")
    assert details == {
        "slot": "default",
        "artifact": "a1",
        "attempt": "att1",
        "step": "verify",
        "duration_ms": 1.5,
        "error_code": "hash_mismatch",
    }


def test_a_failing_step_sink_never_breaks_an_install(tmp_path):
    class Broken:
        def step(self, record: StepRecord) -> None:
            raise RuntimeError("telemetry down")

    artifacts = tmp_path / "artifacts"
    manifest = write_artifact(artifacts, "a1", classifier(1))
    with SlotInstaller(
        tmp_path / "data",
        LocalDirFetcher(artifacts),
        OnnxRuntimeAdapter(),
        config=InstallerConfig(trial=TrialPolicy(window_s=0)),
        steps=Broken(),
    ) as inst:
        inst.apply(desired({"default": assignment("a1", manifest)}))
        assert inst.slot_reports()["default"].state == "committed"


def test_a_crash_rollback_reads_rolling_back_until_serving_has_swapped(device):
    """``model_crashed`` rolls back, then serving reloads the previous version (``after_change``); while it
    does, the slot's report says ``rolling_back``, never ``rolled_back`` before that version serves."""
    device.assign("a1", classifier(1), generation=1)
    device.inner.set_trial_policy(TrialPolicy(window_s=600))
    device.assign("a2", classifier(2), generation=2, version="2.0.0")
    assert device.installer.slot_reports()["default"].state == "trial"
    during: list[tuple[str | None, str]] = []
    device.installer.after_change.append(
        lambda: during.append(
            (
                device.installer.slot_reports()["default"].active,
                device.installer.slot_reports()["default"].state,
            )
        )
    )
    version = device.installer.trial_version("default")
    assert version is not None
    assert device.installer.model_crashed("default", version, "SIGSEGV") is True
    assert during == [("a1", "rolling_back:trial_model_crashed")]
    report = device.installer.slot_reports()["default"]
    assert (report.active, report.state) == ("a1", "rolled_back:trial_model_crashed")
    assert device.installer.model_crashed("default", version, "SIGSEGV") is False  # no longer on trial
