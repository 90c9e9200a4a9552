"""The kill switch with no previous version: the disabled active artifact is withdrawn (nothing active, the
files kept), survives restarts and crashes, and a new assignment of it installs again from disk."""

from __future__ import annotations

import numpy as np
import pytest
from crash.artifacts import classifier, desired, golden_inputs, run_model
from tests.agent.test_install import Died, dies_at, env, serves  # noqa: F401  (env: fixture)

from edgefleet.agent.install.machine import Pointer, Withdrawn
from edgefleet.agent.install.withdraw import recovery_action, withdraws
from edgefleet.agent.runtime.ort import OnnxRuntimeAdapter
from edgefleet.agent.serve.config import RuleConfig, ServingConfig
from edgefleet.agent.serve.errors import BadTensorError, InferenceDeferredError
from edgefleet.agent.serve.service import InferenceService
from edgefleet.agent.serve.source import SlotActiveSource, StaticSource, read_artifact_dir


def test_a_disabled_artifact_without_previous_is_withdrawn_not_kept(env):  # noqa: F811
    inst = env.installer()
    inst.apply(desired({"default": env.artifact("a1", classifier(1))}))
    inst.apply(desired({}, generation=2, disabled=["a1"]))
    report = inst.slot_reports()["default"]
    assert (report.active, report.previous) == (None, None)
    assert (report.state, report.failed_artifact, report.failure_code) == (
        "withdrawn:artifact_disabled",
        "a1",
        "artifact_disabled",
    )
    assert report.behind is None  # nothing is desired in the slot: not behind
    assert inst.serving("default") is None
    store = env.store()
    marker = store.read_withdrawn()
    assert (marker.artifact_id, marker.reason) == ("a1", "artifact_disabled")
    assert store.verify(marker.version)  # the files stay for a re-enable
    assert store.gc(max_removals=10) == []  # and gc keeps them
    source = SlotActiveSource(env.data)
    assert source.active() is None
    assert source.withdrawn().artifact_id == "a1"
    assert source.withdrawn_reason() == "artifact_disabled"

    again = env.installer()  # a restart: still withdrawn, nothing loaded
    assert again.slot_reports()["default"].state == "withdrawn:artifact_disabled"
    assert again.serving("default") is None


def test_re_enabling_installs_it_again_from_disk(env):  # noqa: F811
    inst = env.installer()
    a1 = env.artifact("a1", classifier(1))
    inst.apply(desired({"default": a1}))
    inst.apply(desired({}, generation=2, disabled=["a1"]))
    inst.apply(desired({"default": a1}, generation=3))
    report = inst.slot_reports()["default"]
    assert (report.active, report.state) == ("a1", "committed")
    assert env.fetches == ["a1"]  # no second download
    assert env.store().read_withdrawn() is None
    assert serves(inst, classifier(1))
    assert SlotActiveSource(env.data).withdrawn_reason() is None


def test_a_crash_between_the_marker_and_the_pointer_is_finished_on_restart(env):  # noqa: F811
    env.installer().apply(desired({"default": env.artifact("a1", classifier(1))}))
    inst = env.installer(crash=dies_at("withdraw:marked"))
    with pytest.raises(Died):
        inst.apply(desired({}, generation=2, disabled=["a1"]))
    assert env.store().read_active() is not None  # cut before the pointer went
    again = env.installer()
    assert env.store().read_active() is None
    assert again.slot_reports()["default"].state == "withdrawn:artifact_disabled"
    assert again.serving("default") is None


def test_a_failed_trial_without_previous_keeps_its_version() -> None:
    assert withdraws("artifact_disabled")
    assert not withdraws("trial_failure_rate")
    assert not withdraws("operator")


def _p(version: str) -> Pointer:
    return Pointer(version, "art", 1, "t")


@pytest.mark.parametrize(
    ("marker", "active", "action"),
    [
        (None, None, "none"),
        (None, _p("v1"), "none"),
        (Withdrawn("v1", "a1", "artifact_disabled", "t"), None, "keep"),
        (Withdrawn("v1", "a1", "artifact_disabled", "t"), _p("v1"), "finish"),
        (Withdrawn("v1", "a1", "artifact_disabled", "t"), _p("v2"), "clear"),
    ],
)
def test_recovery_action(marker, active, action) -> None:
    assert recovery_action(marker, active) == action


def _withdrawn_slot(env):  # noqa: F811
    inst = env.installer()
    inst.apply(desired({"default": env.artifact("a1", classifier(1))}))
    inst.apply(desired({}, generation=2, disabled=["a1"]))
    return SlotActiveSource(env.data)


def test_serving_goes_to_the_fallback_artifact_when_the_class_has_one(env):  # noqa: F811
    source = _withdrawn_slot(env)
    env.artifact("fb", classifier(9))
    fallback = StaticSource(read_artifact_dir(env.artifacts / "fb", artifact_id="fb"))
    service = InferenceService(
        source, OnnxRuntimeAdapter(), ServingConfig(), fallback_source=fallback, withdrawn=source.withdrawn
    )
    answer = service.predict({"x": golden_inputs(1)})
    assert (answer.mode, answer.artifact_id) == ("fallback", "fb")
    np.testing.assert_allclose(answer.outputs["probs"], run_model(classifier(9), golden_inputs(1)), atol=1e-5)


def test_without_a_fallback_the_rule_answers_with_the_withdrawn_signature(env):  # noqa: F811
    source = _withdrawn_slot(env)
    rule = RuleConfig(kind="fixed", outputs={"probs": [1.0, 0.0, 0.0, 0.0]})
    service = InferenceService(
        source, OnnxRuntimeAdapter(), ServingConfig(rule=rule), withdrawn=source.withdrawn
    )
    answer = service.predict({"x": golden_inputs(1)})
    assert (answer.mode, answer.model_version) == ("rule", "rule")
    assert answer.outputs["probs"].tolist() == [[1.0, 0.0, 0.0, 0.0]]
    with pytest.raises(BadTensorError):  # requests are still validated against the withdrawn signature
        service.predict({"x": np.zeros((1, 3), dtype=np.float32)})
    defer = InferenceService(source, OnnxRuntimeAdapter(), ServingConfig(), withdrawn=source.withdrawn)
    with pytest.raises(InferenceDeferredError):
        defer.predict({"x": golden_inputs(1)})
