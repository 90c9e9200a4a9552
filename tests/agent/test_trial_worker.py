"""The trial worker: a model that really crashes its runtime (SIGSEGV) kills only the worker process; the
installer sees it, fails or rolls back the version (counted) and keeps serving; restarts of the agent itself
do not count against a version on trial."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from crash.artifacts import assignment, classifier, desired, golden_inputs, run_model, write_artifact
from tests.agent.clock import Clock
from tests.agent.crashing_runtime import POISON, SPEC, crash_on_load

from edgefleet.agent.install import InstallerConfig, LocalDirFetcher, SlotInstaller, TrialPolicy
from edgefleet.agent.install.slots import SlotStore
from edgefleet.agent.runtime.base import LoadOptions
from edgefleet.agent.runtime.ort import OnnxRuntimeAdapter
from edgefleet.agent.runtime.worker import ModelCrashedError, WorkerAdapter, describe_exit

X = golden_inputs(1)


def test_a_worker_serves_like_the_runtime_in_process(tmp_path):
    manifest = write_artifact(tmp_path, "a1", classifier(1))
    model = WorkerAdapter("onnxruntime").load(
        tmp_path / "a1" / "model.onnx", manifest.signature, LoadOptions()
    )
    try:
        assert model.providers == ("CPUExecutionProvider",)
        got = model.predict({"x": X})["probs"]
        np.testing.assert_allclose(got, run_model(classifier(1), X), atol=1e-6)
    finally:
        model.close()


def test_a_load_that_segfaults_is_a_model_crash_not_an_agent_crash(tmp_path):
    manifest = write_artifact(tmp_path, "bad", crash_on_load(classifier(1)))
    with pytest.raises(ModelCrashedError) as crashed:
        WorkerAdapter("onnxruntime", spec=SPEC).load(
            tmp_path / "bad" / "model.onnx", manifest.signature, LoadOptions()
        )
    assert crashed.value.code == "model_crashed"
    assert crashed.value.details["got"] == "SIGSEGV"


def test_a_run_that_segfaults_reports_the_workers_death(tmp_path):
    manifest = write_artifact(tmp_path, "a1", classifier(1))
    died: list[str] = []
    seen = threading.Event()
    model = WorkerAdapter("onnxruntime", spec=SPEC, on_death=lambda how: (died.append(how), seen.set())).load(
        tmp_path / "a1" / "model.onnx", manifest.signature, LoadOptions()
    )
    model.predict({"x": X})  # fine until the poisoned input
    with pytest.raises(ModelCrashedError):
        model.predict({"x": np.full_like(X, POISON)})
    assert seen.wait(10)
    assert died == ["SIGSEGV"]


def test_a_closed_worker_is_not_reported_as_a_crash(tmp_path):
    manifest = write_artifact(tmp_path, "a1", classifier(1))
    died: list[str] = []
    model = WorkerAdapter("onnxruntime", on_death=died.append).load(
        tmp_path / "a1" / "model.onnx", manifest.signature, LoadOptions()
    )
    model.close()
    model.cancel()
    assert died == []


@pytest.mark.parametrize(
    ("code", "text"), [(-11, "SIGSEGV"), (-9, "SIGKILL"), (3, "exit 3"), (None, "running")]
)
def test_exit_statuses_are_named(code, text):
    assert describe_exit(code) == text


# the installer with a trial worker
class Env:
    def __init__(self, tmp_path) -> None:
        self.data = tmp_path / "data"
        self.artifacts = tmp_path / "artifacts"
        self.clock = Clock()
        self.open: list[SlotInstaller] = []

    def installer(self, *, isolated: bool = True, cause="unknown", **trial) -> SlotInstaller:
        for old in self.open:
            old.close()
        inst = SlotInstaller(
            self.data,
            LocalDirFetcher(self.artifacts),
            OnnxRuntimeAdapter(),
            config=InstallerConfig(trial=TrialPolicy(**{"window_s": 600, "max_restarts": 1, **trial})),
            now=self.clock,
            isolated_for=(lambda runtime: WorkerAdapter(runtime, spec=SPEC)) if isolated else None,
        )
        inst.recover(cause)
        self.open = [inst]
        return inst

    def artifact(self, artifact_id: str, model: bytes, release_counter: int = 1):
        manifest = write_artifact(self.artifacts, artifact_id, model, release_counter=release_counter)
        return assignment(artifact_id, manifest)


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    yield e
    for inst in e.open:
        inst.close()


def serves(inst: SlotInstaller, seed: int) -> bool:
    got = inst.model("default").predict({"x": X})["probs"]
    return bool(np.allclose(got, run_model(classifier(seed), X), atol=1e-5))


def test_a_candidate_that_crashes_while_loading_fails_counted_and_the_old_one_serves(env):
    inst = env.installer(window_s=0)
    inst.apply(desired({"default": env.artifact("a1", classifier(1))}))
    bad = env.artifact("a2", crash_on_load(classifier(2)), release_counter=2)
    inst.apply(desired({"default": bad}, generation=2))
    report = inst.slot_reports()["default"]
    assert (report.active, report.state, report.failure_code) == (
        "a1",
        "failed:model_crashed",
        "model_crashed",
    )
    assert (report.behind, report.retrying) == ("failed:model_crashed", False)  # judged: not retried
    assert SlotStore(env.data, "default").read_refusals() == {"a2": 1}
    assert serves(inst, 1)


def test_a_version_on_trial_that_crashes_is_rolled_back_and_counted(env):
    env.installer(window_s=0).apply(desired({"default": env.artifact("a1", classifier(1))}))
    inst = env.installer()
    inst.apply(desired({"default": env.artifact("a2", classifier(2), 2)}, generation=2))
    assert inst.slot_reports()["default"].state == "trial"
    version = inst.trial_version("default")
    assert version is not None
    assert not inst.model_crashed("default", "another-version", "SIGSEGV")  # not the one on trial
    assert inst.model_crashed("default", version, "SIGSEGV")
    report = inst.slot_reports()["default"]
    assert (report.active, report.state) == ("a1", "rolled_back:trial_model_crashed")
    assert inst.last_error("default")["details"] == {"exit": "SIGSEGV"}
    assert SlotStore(env.data, "default").read_refusals() == {"a2": 1}
    assert serves(inst, 1)


@pytest.mark.parametrize("cause", ["power_cut", "clean_restart", "agent_crash", "unknown"])
def test_no_restart_counts_against_a_version_on_trial_in_its_worker(env, cause):
    env.installer(window_s=0).apply(desired({"default": env.artifact("a1", classifier(1))}))
    env.installer().apply(desired({"default": env.artifact("a2", classifier(2), 2)}, generation=2))
    for _ in range(5):  # five restarts, max_restarts = 1: still on trial
        inst = env.installer(cause=cause)
        assert inst.slot_reports()["default"].state == "trial"
    assert serves(inst, 2)
    env.clock.advance(601)
    inst.tick()
    assert inst.slot_reports()["default"].state == "committed"
    assert serves(inst, 2)  # now from an in-process session


@pytest.mark.parametrize(
    ("cause", "rolled_back"), [("power_cut", False), ("clean_restart", False), ("agent_crash", True)]
)
def test_without_a_worker_only_an_agent_crash_counts(env, cause, rolled_back):
    env.installer(isolated=False, window_s=0).apply(desired({"default": env.artifact("a1", classifier(1))}))
    env.installer(isolated=False).apply(
        desired({"default": env.artifact("a2", classifier(2), 2)}, generation=2)
    )
    env.installer(isolated=False, cause=cause)  # restart 1: tolerated either way
    report = env.installer(isolated=False, cause=cause).slot_reports()["default"]
    expected = ("a1", "rolled_back:trial_crashed") if rolled_back else ("a2", "trial")
    assert (report.active, report.state) == expected


def test_a_worker_reports_the_hop_between_the_processes_apart_from_the_run(tmp_path):
    manifest = write_artifact(tmp_path, "a1", classifier(1))
    model = WorkerAdapter("onnxruntime").load(
        tmp_path / "a1" / "model.onnx", manifest.signature, LoadOptions()
    )
    try:
        assert model.hop_s() == 0.0  # nothing run yet on this thread
        model.predict({"x": X})
        assert model.hop_s() > 0.0  # two pipe writes and two wake-ups are never free
        seen: list[float] = []
        other = threading.Thread(target=lambda: seen.append(model.hop_s()))
        other.start()
        other.join()
        assert seen == [0.0]  # per calling thread: concurrent requests never read each other's hop
    finally:
        model.close()
