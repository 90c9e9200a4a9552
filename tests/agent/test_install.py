"""The slot installer end to end on real files and real ONNX models, and the faults of issue 5."""

from __future__ import annotations

import copy
import errno

import numpy as np
import pytest
from crash.artifacts import (
    assignment,
    classifier,
    desired,
    golden_inputs,
    nan_model,
    run_model,
    slow_model,
    write_artifact,
)
from tests.agent.clock import Clock

from edgefleet.agent.install import InstallerConfig, LocalDirFetcher, SlotInstaller, TrialPolicy
from edgefleet.agent.install.health import HealthPolicy
from edgefleet.agent.install.journal import Journal, last_attempt
from edgefleet.agent.install.replay import (
    RollbackIntent,
    completed_rollback,
    pending_rollback,
    rejection_to_count,
)
from edgefleet.agent.install.slots import SlotStore
from edgefleet.agent.runtime.ort import OnnxRuntimeAdapter
from edgefleet.protocol.errors import ConflictError

X = golden_inputs(1)


class Env:
    def __init__(self, tmp_path) -> None:
        self.data = tmp_path / "data"
        self.artifacts = tmp_path / "artifacts"
        self.clock = Clock()
        self.installers: list[SlotInstaller] = []
        self.fetches: list[str] = []

    def artifact(self, artifact_id: str, model: bytes, **kw):
        return assignment(artifact_id, write_artifact(self.artifacts, artifact_id, model, **kw))

    def installer(
        self, *, trial: TrialPolicy | None = None, fetcher=None, crash=None, **config
    ) -> SlotInstaller:
        for old in self.installers:
            old.close()
        env = self

        class CountingFetcher(LocalDirFetcher):
            def fetch(self, a, staging_dir):
                env.fetches.append(a.artifact_id)
                return super().fetch(a, staging_dir)

        inst = SlotInstaller(
            self.data,
            fetcher or CountingFetcher(self.artifacts),
            OnnxRuntimeAdapter(),
            config=InstallerConfig(trial=trial or TrialPolicy(window_s=0), **config),
            now=self.clock,
            **({"crash": crash} if crash else {}),
        )
        inst.recover()
        self.installers.append(inst)
        return inst

    def store(self) -> SlotStore:
        return SlotStore(self.data, "default")


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    yield e
    for inst in e.installers:
        inst.close()


def staging_empty(store: SlotStore) -> bool:
    return not store.staging_dir.exists() or not any(store.staging_dir.iterdir())


def serves(inst: SlotInstaller, model_bytes: bytes) -> bool:
    got = inst.model("default").predict({"x": X})["probs"]
    return bool(np.allclose(got, run_model(model_bytes, X), atol=1e-5))


def test_fresh_install_commits_and_serves(env):
    inst = env.installer()
    inst.apply(desired({"default": env.artifact("a1", classifier(1))}))
    report = inst.slot_reports()["default"]
    assert (report.active, report.previous, report.state) == ("a1", None, "committed")
    assert report.failed_artifact is None
    assert serves(inst, classifier(1))
    att = last_attempt(Journal(env.data / "journal" / "default.jsonl").read())
    assert att.steps_done == ["download", "verify", "stage", "load", "health", "switch", "commit"]
    assert att.terminal == "committed"


def test_upgrade_keeps_previous_on_disk(env):
    inst = env.installer()
    inst.apply(desired({"default": env.artifact("a1", classifier(1))}))
    inst.apply(desired({"default": env.artifact("a2", classifier(2), release_counter=2)}, generation=2))
    report = inst.slot_reports()["default"]
    assert (report.active, report.previous) == ("a2", "a1")
    assert serves(inst, classifier(2))
    assert env.store().verify(env.store().read_previous().version)


def test_same_state_again_is_a_no_op(env):
    inst = env.installer()
    state = desired({"default": env.artifact("a1", classifier(1))})
    inst.apply(state)
    inst.apply(state)
    assert env.fetches == ["a1"]


def test_restart_serves_the_active_version_without_the_network(env):
    inst = env.installer()
    inst.apply(desired({"default": env.artifact("a1", classifier(1))}))
    again = env.installer(fetcher=LocalDirFetcher(env.artifacts / "nowhere"))
    assert again.serving("default") == "a1"
    assert serves(again, classifier(1))


@pytest.mark.parametrize(
    ("model", "kw", "code"),
    [
        (nan_model(), {"expected": run_model(classifier(1), golden_inputs(4))}, "health_output_not_finite"),
        (classifier(2), {"expected": run_model(classifier(1), golden_inputs(4))}, "health_output_mismatch"),
        (slow_model(), {"latency_ceiling_ms": 0.5}, "health_latency_over_ceiling"),
    ],
    ids=["nan", "wrong-outputs", "10x-slower-than-ceiling"],
)
def test_unhealthy_candidate_is_not_activated(env, model, kw, code):
    inst = env.installer()
    inst.apply(desired({"default": env.artifact("a1", classifier(1))}))
    inst.apply(desired({"default": env.artifact("bad", model, release_counter=2, **kw)}, generation=2))
    report = inst.slot_reports()["default"]
    assert (report.active, report.state) == ("a1", f"failed:{code}")
    assert (report.failed_artifact, report.failure_code) == ("bad", code)
    assert inst.last_error("default")["code"] == code
    assert serves(inst, classifier(1))


def test_hanging_health_check_is_bounded(env):
    inst = env.installer(health=HealthPolicy(timeout_s=0.3))
    inst.apply(desired({"default": env.artifact("a1", classifier(1))}))
    hang = env.artifact("hang", slow_model(chain=3000), release_counter=2, warmup_runs=0)
    inst.apply(desired({"default": hang}, generation=2))
    assert inst.slot_reports()["default"].state == "failed:health_check_timeout"
    assert inst.serving("default") == "a1"


def test_first_install_that_fails_leaves_no_active(env):
    inst = env.installer()
    bad = env.artifact("bad", nan_model(), expected=run_model(classifier(1), golden_inputs(4)))
    inst.apply(desired({"default": bad}))
    assert inst.slot_reports()["default"].active is None
    assert inst.model("default") is None


def test_release_rejected_n_times_is_refused_until_a_newer_one_arrives(env):
    inst = env.installer(max_rollbacks=2)
    inst.apply(desired({"default": env.artifact("a1", classifier(1))}))
    bad = env.artifact(
        "bad", nan_model(), release_counter=2, expected=run_model(classifier(1), golden_inputs(4))
    )
    for generation in (2, 3):
        inst.apply(desired({"default": bad}, generation=generation))
        assert inst.slot_reports()["default"].state == "failed:health_output_not_finite"
    fetched = len(env.fetches)
    inst.apply(desired({"default": bad}, generation=4))
    assert inst.slot_reports()["default"].state == "refused:rolled_back"
    assert inst.last_error("default")["code"] == "release_refused_after_rollbacks"
    assert len(env.fetches) == fetched  # not even downloaded again
    inst.apply(desired({"default": env.artifact("a3", classifier(3), release_counter=3)}, generation=5))
    assert inst.slot_reports()["default"].active == "a3"


def test_disk_full_before_staging(env):
    inst = env.installer(fetcher=LocalDirFetcher(env.artifacts, free_bytes=lambda _p: 10))
    inst.apply(desired({"default": env.artifact("a1", classifier(1))}))
    assert inst.slot_reports()["default"].state == "failed:disk_full"
    assert staging_empty(env.store())


def test_disk_full_during_staging_keeps_the_active_version(env, monkeypatch):
    inst = env.installer()
    inst.apply(desired({"default": env.artifact("a1", classifier(1))}))

    class FullDiskFetcher(LocalDirFetcher):
        def fetch(self, a, staging_dir):
            staging_dir.mkdir(parents=True, exist_ok=True)
            (staging_dir / "model.onnx").write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")

    inst2 = env.installer(fetcher=FullDiskFetcher(env.artifacts))
    inst2.apply(desired({"default": env.artifact("a2", classifier(2), release_counter=2)}, generation=2))
    report = inst2.slot_reports()["default"]
    assert (report.active, report.state) == ("a1", "failed:disk_full")
    assert staging_empty(env.store())
    assert serves(inst2, classifier(1))


def test_translated_enospc_from_the_local_fetcher(env, monkeypatch):
    inst = env.installer()
    real_open = type(env.data).open

    def full_open(self, mode="r", *a, **kw):
        if "w" in mode and "staging" in str(self):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(self, mode, *a, **kw)

    monkeypatch.setattr(type(env.data), "open", full_open)
    inst.apply(desired({"default": env.artifact("a1", classifier(1))}))
    assert inst.slot_reports()["default"].state == "failed:disk_full"


def test_staged_file_changed_after_verification_is_caught_at_the_switch(env):
    env.installer().apply(desired({"default": env.artifact("a1", classifier(1))}))
    a2 = env.artifact("a2", classifier(2), release_counter=2)
    store = env.store()

    def tamper(point: str) -> None:  # injected fault: someone rewrites the file after the health check
        if point == "after:health":
            key = next(k for k in store.versions() if k != store.read_active().version)
            path = store.files_dir(key) / "golden.npz"
            path.write_bytes(path.read_bytes() + b"x")

    inst = env.installer(crash=tamper)
    inst.apply(desired({"default": a2}, generation=2))
    report = inst.slot_reports()["default"]
    assert (report.active, report.state) == ("a1", "failed:version_corrupt")
    assert serves(inst, classifier(1))


def test_assignment_not_matching_its_manifest_is_refused(env):
    inst = env.installer()
    a1 = env.artifact("a1", classifier(1))
    # the assignment names a manifest by hash: other bytes under that name are refused
    forged = copy.deepcopy(a1)
    forged.manifest.hashes.sha256 = "0" * 64
    inst.apply(desired({"default": forged}))
    assert inst.slot_reports()["default"].state == "failed:hash_mismatch"


def test_artifact_source_not_matching_the_manifest_is_refused(env):
    inst = env.installer()
    a1 = env.artifact("a1", classifier(1))
    (env.artifacts / "a1" / "model.onnx").write_bytes(classifier(9))
    inst.apply(desired({"default": a1}))
    assert inst.slot_reports()["default"].state == "failed:hash_mismatch"


# trial and rollback
def trial_env(env, **policy):
    env.installer().apply(desired({"default": env.artifact("a1", classifier(1))}))
    inst = env.installer(trial=TrialPolicy(window_s=600, **policy))
    assert inst.slot_reports()["default"].state == "committed"
    inst.apply(desired({"default": env.artifact("a2", classifier(2), release_counter=2)}, generation=2))
    assert inst.slot_reports()["default"].state == "trial"
    return inst


def test_trial_commits_after_the_window(env):
    inst = trial_env(env, min_requests=3)
    env.clock.advance(601)
    inst.tick()
    assert inst.slot_reports()["default"].state == "trial"  # not enough requests yet
    for _ in range(3):
        inst.record_inference("default", ok=True)
    inst.tick()
    assert inst.slot_reports()["default"].state == "committed"
    assert inst.slot_reports()["default"].previous == "a1"


def test_failure_rate_over_threshold_rolls_back_without_the_network(env):
    inst = trial_env(env, max_failure_rate=0.1, min_requests_for_rate=10)
    for i in range(10):
        inst.record_inference("default", ok=i % 3 != 0)
    inst.tick()
    report = inst.slot_reports()["default"]
    assert (report.active, report.previous, report.state) == ("a1", None, "rolled_back:trial_failure_rate")
    assert (report.failed_artifact, report.failure_code) == ("a2", "trial_failure_rate")
    assert serves(inst, classifier(1))


def test_watchdog_rolls_back_a_silent_trial(env):
    inst = trial_env(env, watchdog_s=30)
    env.clock.advance(10)
    inst.heartbeat("default")
    env.clock.advance(25)
    inst.tick()
    assert inst.slot_reports()["default"].state == "trial"
    env.clock.advance(31)
    inst.tick()
    assert inst.slot_reports()["default"].state == "rolled_back:trial_watchdog"


def test_repeated_crashes_during_the_trial_roll_back(env):
    trial_env(env, max_restarts=1)
    inst = env.installer(trial=TrialPolicy(window_s=600, max_restarts=1))  # restart 1: tolerated
    assert inst.slot_reports()["default"].state == "trial"
    inst = env.installer(trial=TrialPolicy(window_s=600, max_restarts=1))  # restart 2: rolled back
    report = inst.slot_reports()["default"]
    assert (report.active, report.state) == ("a1", "rolled_back:trial_crashed")
    assert serves(inst, classifier(1))


def test_release_rolled_back_n_times_is_refused(env):
    inst = trial_env(env, max_failure_rate=0.0, min_requests_for_rate=1)
    a2 = inst._slots["default"].trial.artifact_id
    for generation in (3, 4):
        inst.record_inference("default", ok=False)
        inst.tick()
        assert inst.slot_reports()["default"].state == "rolled_back:trial_failure_rate"
        inst.apply(
            desired({"default": env.artifact(a2, classifier(2), release_counter=2)}, generation=generation)
        )
    assert inst.slot_reports()["default"].state == "refused:rolled_back"
    assert inst.serving("default") == "a1"


def test_previous_corrupted_keeps_the_current_version_and_reports_it(env):
    inst = trial_env(env, max_failure_rate=0.0, min_requests_for_rate=1)
    store = env.store()
    prev = store.read_previous()
    (store.files_dir(prev.version) / "model.onnx").write_bytes(b"bit rot")
    inst.record_inference("default", ok=False)
    inst.tick()
    report = inst.slot_reports()["default"]
    assert (report.active, report.previous) == ("a2", "a1")
    assert report.state == "kept:trial_failure_rate:previous_corrupt"
    assert inst.last_error("default")["code"] == "version_corrupt"
    assert store.has_version(prev.version)  # never deleted, even corrupt
    inst.record_inference("default", ok=True)
    assert serves(inst, classifier(2))


def test_new_assignment_during_a_trial_keeps_the_last_good_previous(env):
    inst = trial_env(env)
    inst.apply(desired({"default": env.artifact("a3", classifier(3), release_counter=3)}, generation=3))
    report = inst.slot_reports()["default"]
    assert (report.active, report.previous) == ("a3", "a1")


# operator paths
def test_operator_pin_to_previous_reactivates_from_disk(env):
    inst = env.installer()
    a1 = env.artifact("a1", classifier(1))
    inst.apply(desired({"default": a1}))
    inst.apply(desired({"default": env.artifact("a2", classifier(2), release_counter=2)}, generation=2))
    fetched = list(env.fetches)
    inst.apply(desired({"default": a1}, generation=3))
    report = inst.slot_reports()["default"]
    assert (report.active, report.previous) == ("a1", "a2")
    assert env.fetches == fetched
    assert serves(inst, classifier(1))


def test_local_rollback_without_the_network(env):
    inst = env.installer()
    inst.apply(desired({"default": env.artifact("a1", classifier(1))}))
    inst.apply(desired({"default": env.artifact("a2", classifier(2), release_counter=2)}, generation=2))
    assert inst.rollback("default") is True
    assert inst.serving("default") == "a1"
    assert inst.rollback("default") is False  # nothing further back


def test_disabled_active_artifact_rolls_back(env):
    inst = env.installer()
    inst.apply(desired({"default": env.artifact("a1", classifier(1))}))
    inst.apply(desired({"default": env.artifact("a2", classifier(2), release_counter=2)}, generation=2))
    inst.apply(desired({}, generation=3, disabled=["a2"]))
    report = inst.slot_reports()["default"]
    assert (report.active, report.state) == ("a1", "rolled_back:artifact_disabled")


def test_disabled_assignment_is_not_installed(env):
    inst = env.installer()
    inst.apply(desired({"default": env.artifact("a1", classifier(1))}, disabled=["a1"]))
    assert inst.slot_reports()["default"].state == "refused:disabled"
    assert env.fetches == []


# recovery
def test_corrupt_active_at_boot_falls_back_to_previous(env):
    inst = env.installer()
    inst.apply(desired({"default": env.artifact("a1", classifier(1))}))
    inst.apply(desired({"default": env.artifact("a2", classifier(2), release_counter=2)}, generation=2))
    store = env.store()
    (store.files_dir(store.read_active().version) / "model.onnx").write_bytes(b"bit rot")
    again = env.installer()
    report = again.slot_reports()["default"]
    assert (report.active, report.state) == ("a1", "rolled_back:active_unusable")
    assert serves(again, classifier(1))


def test_two_installers_on_one_data_dir(env):
    env.installer()
    with pytest.raises(ConflictError) as err:
        SlotInstaller(env.data, LocalDirFetcher(env.artifacts), OnnxRuntimeAdapter())
    assert err.value.code == "agent_already_running"


def test_gc_after_commits_keeps_active_and_previous(env):
    inst = env.installer(gc_max_removals=10)
    for i in range(1, 6):
        inst.apply(
            desired({"default": env.artifact(f"a{i}", classifier(i), release_counter=i)}, generation=i)
        )
    store = env.store()
    assert sorted(store.versions()) == sorted([store.read_active().version, store.read_previous().version])


def test_corrupt_only_version_is_repaired_by_the_next_assignment(env):
    inst = env.installer()
    a1 = env.artifact("a1", classifier(1))
    inst.apply(desired({"default": a1}))
    store = env.store()
    (store.files_dir(store.read_active().version) / "model.onnx").write_bytes(b"bit rot")
    again = env.installer()
    assert again.slot_reports()["default"].state == "error:active_unusable"
    assert again.model("default") is None
    again.apply(desired({"default": a1}, generation=2))
    assert again.slot_reports()["default"].state == "committed"
    assert serves(again, classifier(1))


def test_each_version_loads_with_the_runtime_its_manifest_names(env):
    from edgefleet.agent.serve import RuntimeAdapters

    inst = SlotInstaller(
        env.data / "by-runtime",
        LocalDirFetcher(env.artifacts),
        adapter_for=RuntimeAdapters(),
        config=InstallerConfig(trial=TrialPolicy(window_s=0)),
        now=env.clock,
    )
    env.installers.append(inst)
    inst.apply(desired({"default": env.artifact("ort1", classifier(1))}))
    assert inst.model("default").providers == ("CPUExecutionProvider",)
    # an ONNX file under a manifest that names LiteRT: the LiteRT adapter is chosen, and refuses the file
    lite = env.artifact("lite", classifier(2), release_counter=2, runtime="litert")
    inst.apply(desired({"default": lite}, generation=2))
    report = inst.slot_reports()["default"]
    assert (report.active, report.state) == ("ort1", "failed:model_load_failed")  # not an agent crash
    assert "LiteRT" in inst.last_error("default")["message"]


# crashes inside a rollback and around the rejection count (the crash harness does the same with SIGKILL)
class Died(Exception):
    pass


def dies_at(name: str):
    def crash(point: str) -> None:
        if point == name:
            raise Died(point)

    return crash


@pytest.mark.parametrize(
    "point",
    [
        "rollback:journaled",
        "refusals:before",
        "refusals:after",
        "rollback:active_replaced",
        "rollback:previous_removed",
        "rollback:end",
    ],
)
def test_trial_rollback_cut_at_any_point_is_finished_on_restart_and_counted_once(env, point):
    policy = {"max_failure_rate": 0.0, "min_requests_for_rate": 1}
    trial_env(env, **policy)
    inst = env.installer(trial=TrialPolicy(window_s=600, max_restarts=5, **policy), crash=dies_at(point))
    inst.record_inference("default", ok=False)
    with pytest.raises(Died):
        inst.tick()
    again = env.installer(trial=TrialPolicy(window_s=600, max_restarts=5, **policy))
    report = again.slot_reports()["default"]
    assert (report.active, report.previous) == ("a1", None)
    assert (report.state, report.failed_artifact) == ("rolled_back:trial_failure_rate", "a2")
    assert env.store().read_refusals() == {"a2": 1}
    assert env.store().read_trial() is None
    assert pending_rollback(Journal(env.data / "journal" / "default.jsonl").read()) is None
    assert serves(again, classifier(1))


def test_rollback_decided_with_a_corrupt_previous_is_abandoned_on_restart(env):
    policy = {"max_failure_rate": 0.0, "min_requests_for_rate": 1}
    trial_env(env, **policy)
    inst = env.installer(
        trial=TrialPolicy(window_s=600, max_restarts=5, **policy), crash=dies_at("rollback:journaled")
    )
    inst.record_inference("default", ok=False)
    with pytest.raises(Died):
        inst.tick()
    store = env.store()
    (store.files_dir(store.read_previous().version) / "model.onnx").write_bytes(b"bit rot")
    again = env.installer(trial=TrialPolicy(window_s=600, max_restarts=5, **policy))
    report = again.slot_reports()["default"]
    assert (report.active, report.previous) == (
        "a2",
        "a1",
    )  # the current version is kept, previous never deleted
    assert report.state == "kept:trial_failure_rate:previous_corrupt"
    records = Journal(env.data / "journal" / "default.jsonl").read()
    assert pending_rollback(records) is None
    assert records[-1]["event"] == "rollback_abandoned"
    assert records[-1]["code"] == "version_corrupt"
    assert serves(again, classifier(2))


@pytest.mark.parametrize("point", ["refusals:before", "refusals:after"])
def test_rejection_cut_around_its_count_is_counted_once_on_restart(env, point):
    env.installer().apply(desired({"default": env.artifact("a1", classifier(1))}))
    bad = env.artifact(
        "bad", nan_model(), release_counter=2, expected=run_model(classifier(1), golden_inputs(4))
    )
    inst = env.installer(crash=dies_at(point))
    with pytest.raises(Died):
        inst.apply(desired({"default": bad}, generation=2))
    again = env.installer(max_rollbacks=1)
    assert env.store().read_refusals() == {"bad": 1}
    again.apply(desired({"default": bad}, generation=3))
    assert again.slot_reports()["default"].state == "refused:rolled_back"
    env.installer()  # a further restart recounts nothing
    assert env.store().read_refusals() == {"bad": 1}


def test_gc_cut_after_a_commit_is_finished_on_restart(env):
    inst = env.installer()
    for i in (1, 2):
        inst.apply(
            desired({"default": env.artifact(f"a{i}", classifier(i), release_counter=i)}, generation=i)
        )
    inst = env.installer(crash=dies_at("gc:start"))
    with pytest.raises(Died):
        inst.apply(desired({"default": env.artifact("a3", classifier(3), release_counter=3)}, generation=3))
    store = env.store()
    assert len(store.versions()) == 3
    env.installer()
    assert sorted(store.versions()) == sorted([store.read_active().version, store.read_previous().version])


INTENT = {
    "attempt": "t1",
    "event": "rollback",
    "code": "trial_failure_rate",
    "from_version": "k2",
    "from_artifact": "a2",
    "to_version": "k1",
    "to_artifact": "a1",
    "count": True,
}


def test_pending_rollback_is_the_last_decision_not_closed():
    begin = {"attempt": "t1", "event": "begin", "artifact_id": "a2", "version": "k2"}
    assert pending_rollback([begin, INTENT]) == RollbackIntent(
        attempt="t1",
        reason="trial_failure_rate",
        from_version="k2",
        from_artifact="a2",
        to_version="k1",
        to_artifact="a1",
        count=True,
    )
    for closed in ("rolled_back", "rollback_abandoned"):
        assert pending_rollback([begin, INTENT, {"attempt": "t1", "event": closed}]) is None
    assert pending_rollback([INTENT, {"attempt": "other", "event": "rolled_back"}]) is not None
    assert pending_rollback([INTENT, {"attempt": "t2", "event": "begin"}]) is None  # superseded
    assert pending_rollback([{**INTENT, "count": "yes"}]) is None  # malformed: ignored
    assert pending_rollback([{k: v for k, v in INTENT.items() if k != "to_version"}]) is None
    assert pending_rollback([]) is None


def test_rejection_to_count_is_the_last_attempt_failed_with_count():
    begin = {"attempt": "t1", "event": "begin", "artifact_id": "bad", "version": "k"}
    failed = {"attempt": "t1", "event": "failed", "step": "health", "code": "x", "count": True}
    assert rejection_to_count([begin, failed]) == ("bad", "t1")
    assert rejection_to_count([begin, {**failed, "count": None}]) is None  # a download failure counts nothing
    assert (
        rejection_to_count([begin, {k: v for k, v in failed.items() if k != "count"}]) is None
    )  # old journal
    assert (
        rejection_to_count([begin, failed, {"attempt": "t2", "event": "begin", "artifact_id": "b"}]) is None
    )
    assert rejection_to_count([begin]) is None


def test_completed_rollback_is_the_last_one_done_with_no_attempt_since():
    done = {"attempt": "t1", "event": "rolled_back", "code": "trial_failure_rate"}
    assert completed_rollback([INTENT, done]) == pending_rollback([INTENT])
    assert completed_rollback([INTENT]) is None  # decided, not done
    assert completed_rollback([INTENT, {"attempt": "t1", "event": "rollback_abandoned"}, done]) is None
    assert completed_rollback([INTENT, done, {"attempt": "t2", "event": "begin"}]) is None


def test_restart_after_a_rollback_still_reports_it(env):
    inst = trial_env(env, max_failure_rate=0.0, min_requests_for_rate=1)
    inst.record_inference("default", ok=False)
    inst.tick()
    again = env.installer()
    report = again.slot_reports()["default"]
    assert (report.active, report.state) == ("a1", "rolled_back:trial_failure_rate")
    assert (report.failed_artifact, report.failure_code) == ("a2", "trial_failure_rate")
    again.apply(desired({"default": env.artifact("a3", classifier(3), release_counter=3)}, generation=3))
    assert env.installer().slot_reports()["default"].state == "committed"


# resume: an install that did not finish is retried until it is installed or refused
def test_an_install_cut_before_its_switch_is_behind_and_retried(env):
    env.installer().apply(desired({"default": env.artifact("a1", classifier(1))}))
    a2 = env.artifact("a2", classifier(2), release_counter=2)
    cut = env.installer(crash=dies_at("after:stage"))
    with pytest.raises(Died):
        cut.apply(desired({"default": a2}, generation=2))
    inst = env.installer()  # the restart: recovery marks the attempt interrupted
    assert inst.slot_reports()["default"].desired is None  # the agent hands the stored state over on start
    inst.apply(desired({"default": a2}, generation=2))
    report = inst.slot_reports()["default"]
    assert (report.active, report.behind, report.retrying) == ("a2", None, False)
    assert serves(inst, classifier(2))


def test_a_failed_download_says_why_it_is_behind_and_a_retry_installs_it(env):
    inst = env.installer()
    inst.apply(desired({"default": env.artifact("a1", classifier(1))}))
    a2 = env.artifact("a2", classifier(2), release_counter=2)
    moved = env.artifacts / "a2.away"
    (env.artifacts / "a2").rename(moved)  # the source is unreachable for now
    inst.apply(desired({"default": a2}, generation=2))
    report = inst.slot_reports()["default"]
    assert (report.active, report.desired, report.behind, report.retrying) == (
        "a1",
        "a2",
        "failed:artifact_missing",
        True,
    )
    assert inst.wants_retry()
    moved.rename(env.artifacts / "a2")
    assert inst.retry()
    report = inst.slot_reports()["default"]
    assert (report.active, report.behind, report.retrying) == ("a2", None, False)
    assert not inst.wants_retry()
    assert not inst.retry()


def test_a_refused_artifact_is_behind_but_not_retried(env):
    inst = trial_env(env, max_failure_rate=0.0, min_requests_for_rate=1)
    a2 = env.artifact("a2", classifier(2), release_counter=2)
    inst = env.installer(trial=TrialPolicy(window_s=600, max_failure_rate=0.0, min_requests_for_rate=1))
    for _ in range(2):
        inst.apply(desired({"default": a2}, generation=2))
        inst.record_inference("default", ok=False)
        inst.tick()
    inst.apply(desired({"default": a2}, generation=2))
    report = inst.slot_reports()["default"]
    assert (report.active, report.behind, report.retrying) == ("a1", "refused:rolled_back", False)
    assert not inst.wants_retry()


class _ClosingAdapter(OnnxRuntimeAdapter):
    """Real ONNX Runtime models that record whether they were closed."""

    def __init__(self) -> None:
        super().__init__()
        self.loaded: list[object] = []
        self.closed: list[object] = []

    def load(self, model_path, signature, options):
        model = super().load(model_path, signature, options)
        closed = self.closed
        inner_close = model.close

        def close() -> None:
            closed.append(model)
            inner_close()

        model.close = close  # type: ignore[method-assign]
        self.loaded.append(model)
        return model


def test_a_slot_served_elsewhere_is_checked_then_released(env):
    """``release_served`` (the agent, whose serving layer holds the served slot's model): every version the
    installer loads there passes its checks and is closed, the slot still counts as loaded (the same
    desired state fetches nothing again), a restart recovers it the same way, and a rollback still loads
    ``previous`` before switching back to it."""
    adapter = _ClosingAdapter()
    release = {"served_slots": frozenset({"default"}), "release_served": True}
    trial = TrialPolicy(window_s=600, max_failure_rate=0.0, min_requests_for_rate=1)

    def installer(trial: TrialPolicy = TrialPolicy(window_s=0)) -> SlotInstaller:
        for old in env.installers:
            old.close()
        inst = SlotInstaller(
            env.data,
            LocalDirFetcher(env.artifacts),
            adapter,
            config=InstallerConfig(trial=trial, **release),
            now=env.clock,
        )
        inst.recover()
        env.installers.append(inst)
        return inst

    inst = installer()
    first = desired({"default": env.artifact("a1", classifier(1))})
    inst.apply(first)
    report = inst.slot_reports()["default"]
    assert (report.active, report.state) == ("a1", "committed")
    assert inst.model("default") is None
    assert inst.serving("default") == "a1"
    assert adapter.loaded
    assert adapter.closed == adapter.loaded
    loads = len(adapter.loaded)
    inst.apply(first)  # loaded and current: nothing to do
    assert len(adapter.loaded) == loads
    assert inst.slot_reports()["default"].state == "committed"

    inst = installer(trial)  # a restart: recovery checks the active version and releases it too
    assert inst.model("default") is None
    assert inst.serving("default") == "a1"
    assert adapter.closed == adapter.loaded
    loads = len(adapter.loaded)
    inst.apply(first)
    assert len(adapter.loaded) == loads

    inst.apply(desired({"default": env.artifact("a2", classifier(2))}, generation=2))
    assert inst.on_trial("default") is not None
    inst.record_inference("default", ok=False)
    inst.tick()
    report = inst.slot_reports()["default"]
    assert (report.active, report.state) == ("a1", "rolled_back:trial_failure_rate")
    assert inst.serving("default") == "a1"
    assert inst.model("default") is None
    assert adapter.closed == adapter.loaded
