"""Power cut at every step: SIGKILL a real agent process at each named point of install and activation,
inside a rollback, inside the garbage collector, around the refusal-counter writes, and between the bytes of
each durable write; restart it, and check the never-brick invariant.

Invariant after the kill (``check_invariant``): the ``active`` pointer is absent (fresh device only) or names
a version whose files all verify against its manifest, and it is one of the versions the scenario allows; a
``previous`` pointer names a version whose files all verify; every directory under ``versions/`` is a
complete version (a half-deleted or half-written one never appears there). Then an agent started without the
fault ends in the scenario's expected state, and the next install attempt commits.

Each killed run is checked to have been killed *at* the point: the child writes every crash point it reaches
to stderr (``crash-point <name>``), and the last one must be the point asked for (for ``<point>#n``, its n-th
occurrence), reached inside the operation under test (e.g. after ``rollback:start`` for a rollback point).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

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
from edgefleet.agent.install import CRASH_ENV_VAR
from edgefleet.agent.install.journal import Journal
from edgefleet.agent.install.replay import pending_rollback
from edgefleet.agent.install.slots import SlotStore

CHILD = Path(__file__).with_name("child.py")
TRACE_PREFIX = "crash-point "
STEPS = ("download", "verify", "stage", "load", "health", "switch", "commit")
WRITES = ("model.onnx", "golden.npz", "manifest.json", "trial", "active", "journal", "journal#4", "journal#9")
POINTS = [f"{when}:{step}" for step in STEPS for when in ("before", "after")] + [f"write:{w}" for w in WRITES]

ROLLBACK_OPTS = ("--window", "600", "--max-restarts", "10", "--max-rollbacks", "1", "--fail-trial")
"""A v2 on trial that gets one failed request: a counted rollback (``trial_failure_rate``) to v1."""
COUNTED_ROLLBACK_POINTS = (
    "rollback:start",  # decided, v1 verified and loaded, nothing written
    "write:journal",  # the decision's journal line torn
    "rollback:journaled",  # the decision durable, nothing else changed
    "refusals:before",
    "write:refusals",
    "refusals:after",  # the rejection counted, pointers unchanged
    "write:active",  # active being replaced by v1
    "rollback:active_replaced",  # active = v1, previous still names v1
    "rollback:previous_removed",  # pointers final, rolled_back not yet journaled
    "write:journal#2",  # the rolled_back line torn
    "rollback:end",  # journaled, the trial record not yet removed
)
NOT_DURABLE = {"rollback:start", "write:journal"}
"""Rollback points before its decision is on disk: after the restart v2 is still on trial (one more
restart), and the failing request that follows rolls it back. From any later point the restart finishes the
rollback itself."""
UNCOUNTED_ROLLBACK_POINTS = tuple(
    p for p in COUNTED_ROLLBACK_POINTS if not p.startswith(("refusals", "write:ref"))
)
REJECTION_POINTS = ("write:journal#6", "refusals:before", "write:refusals", "refusals:after")
"""A candidate that fails its health check: the 6th journal line of the run is its ``failed`` record (begin,
download, verify, stage, load, failed), journaled before the rejection is counted."""
GC_POINTS = ("gc:start", "gc:moved", "gc:deleting", "gc:deleting#2", "gc:deleting#3")
"""Committing v3 over v2 (previous v1) collects v1: chosen, renamed into trash/, its three files deleted."""


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    trace: list[str]

    @property
    def result(self) -> dict:
        return json.loads(self.stdout.strip().splitlines()[-1])

    def killed_at(self, point: str) -> bool:
        """SIGKILLed by the fault hook at ``point`` (``name#n``: the n-th time ``name`` was reached)."""
        name, _, nth = point.partition("#")
        return (
            self.returncode == -signal.SIGKILL
            and bool(self.trace)
            and self.trace[-1] == name
            and self.trace.count(name) == (int(nth) if nth else 1)
        )

    def reached(self, point: str) -> bool:
        name, _, nth = point.partition("#")
        return self.trace.count(name) >= (int(nth) if nth else 1)


def run_child(
    data: Path, artifacts: Path, desired_json: Path, crash_at: str | None = None, opts: tuple[str, ...] = ()
) -> Run:
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV_VAR}
    if crash_at:
        env[CRASH_ENV_VAR] = crash_at
    proc = subprocess.run(
        [sys.executable, str(CHILD), str(data), str(artifacts), str(desired_json), *opts],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    trace = [line[len(TRACE_PREFIX) :] for line in proc.stderr.splitlines() if line.startswith(TRACE_PREFIX)]
    return Run(proc.returncode, proc.stdout, proc.stderr, trace)


def ok(run: Run) -> dict:
    assert run.returncode == 0, run.stderr[-3000:]
    return run.result


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Releases v1..v4 and a bad one on disk, and data dirs where v1, then v2, is installed and committed,
    and one where v2 is on trial over v1."""
    root = tmp_path_factory.mktemp("crash")
    artifacts = root / "artifacts"
    states = {}

    def state(name: str, generation: int, slots: dict, disabled: list[str] | None = None) -> None:
        path = root / f"desired-{name}.json"
        path.write_text(json.dumps(desired(slots, generation=generation, disabled=disabled).to_dict()))
        states[name] = path

    for generation, seed in enumerate((1, 2, 3, 4), start=1):
        artifact_id = f"v{generation}"
        manifest = write_artifact(artifacts, artifact_id, classifier(seed), release_counter=generation)
        state(artifact_id, generation, {"default": assignment(artifact_id, manifest)})
    expected = run_model(classifier(1), golden_inputs(4))  # a NaN model checked against real outputs
    bad = write_artifact(artifacts, "bad", nan_model(), release_counter=5, expected=expected)
    state("bad", 5, {"default": assignment("bad", bad)})
    state("disable-v2", 6, {}, disabled=["v2"])
    state("disable-v1", 7, {}, disabled=["v1"])

    installed_v1 = root / "installed-v1"
    ok(run_child(installed_v1, artifacts, states["v1"]))
    installed_v2 = root / "installed-v2"
    shutil.copytree(installed_v1, installed_v2)
    assert ok(run_child(installed_v2, artifacts, states["v2"]))["state"] == "committed"
    v2_on_trial = root / "v2-on-trial"
    shutil.copytree(installed_v1, v2_on_trial)
    assert ok(run_child(v2_on_trial, artifacts, states["v2"], opts=("--window", "600")))["state"] == "trial"
    return {
        "artifacts": artifacts,
        "states": states,
        "installed_v1": installed_v1,
        "installed_v2": installed_v2,
        "v2_on_trial": v2_on_trial,
    }


def check_invariant(data: Path, allowed: set[str | None]) -> str | None:
    """The never-brick invariant; returns the active artifact id."""
    store = SlotStore(data, "default")
    for key in store.versions():  # complete or absent: a version dir only appears, and leaves, whole
        store.verify(key)
    active = store.read_active()
    assert (active.artifact_id if active else None) in allowed
    if active is None:
        return None
    manifest = store.verify(active.version)  # every file present and intact
    assert manifest.release_counter == active.release_counter
    previous = store.read_previous()
    if previous is not None:
        store.verify(previous.version)  # the rollback target is intact whenever a pointer names it
    return active.artifact_id


def check_upgrade(data: Path, old: str | None, new: str) -> str | None:
    active = check_invariant(data, {old, new} if old else {None, new})
    if old is not None and active == new:
        previous = SlotStore(data, "default").read_previous()
        assert previous is not None
        assert previous.artifact_id == old
    return active


def crash_then_recover(world, tmp_path: Path, scenario: str, point: str) -> None:
    data = tmp_path / "data"
    if scenario == "upgrade":
        shutil.copytree(world["installed_v1"], data)
        old, new = "v1", "v2"
    else:
        old, new = None, "v1"
    desired_json = world["states"][new]
    killed = run_child(data, world["artifacts"], desired_json, crash_at=point)
    assert killed.killed_at(point), f"{point} was never reached: {killed.trace[-5:]} {killed.stderr[-2000:]}"
    check_upgrade(data, old, new)
    result = ok(run_child(data, world["artifacts"], desired_json))
    assert (result["active"], result["serving"], result["state"], result["matches"]) == (
        new,
        new,
        "committed",
        True,
    )
    assert result["previous"] == old
    check_upgrade(data, old, new)


@pytest.mark.parametrize("point", POINTS)
def test_upgrade_survives_a_kill_at(world, tmp_path, point):
    crash_then_recover(world, tmp_path, "upgrade", point)


def test_upgrade_survives_a_kill_between_the_pointer_writes(world, tmp_path):
    crash_then_recover(world, tmp_path, "upgrade", "write:previous")


@pytest.mark.slow
@pytest.mark.parametrize("point", POINTS)
def test_first_install_survives_a_kill_at(world, tmp_path, point):
    crash_then_recover(world, tmp_path, "fresh", point)


ONCE_ONLY = {
    "after:switch": "the switch happens in one run only: the restart finds v2 active and on trial, never "
    "switches again, and (window 0) commits it during recovery",
    "after:commit": "the commit is journaled before the point: the restart finds the attempt committed and "
    "v2 active, with nothing left to do",
    "write:journal#9": "the 9th journal line of a run is the `committed` record only in the run that does "
    "the whole install (begin, 6 steps, commit, committed); the restart commits from the trial record with "
    "2 lines",
}
"""Points that cannot be hit twice in a row, and why: each is after the switch's durable effects, and the run
after the kill completes from there (``recover``) without passing that point again. Every other point of
``POINTS`` is killed at in each of the three runs. ``before:commit`` is reached three times by two paths: the
2nd kill is in recovery (the trial, restart 1, commits at once); the 3rd restart exceeds ``max_restarts`` = 1,
so recovery rolls v2 back (``trial_crashed``) and the apply that follows re-installs it from disk (no
download) up to its commit again."""


@pytest.mark.slow
@pytest.mark.parametrize("point", POINTS)
def test_repeated_kills_at_the_same_point_then_success(world, tmp_path, point):
    """Killed three times in a row at the same point (each retry starts from the state the last left)."""
    data = tmp_path / "data"
    shutil.copytree(world["installed_v1"], data)
    runs = []
    for _ in range(3):
        runs.append(run_child(data, world["artifacts"], world["states"]["v2"], crash_at=point))
        check_upgrade(data, "v1", "v2")
    killed = [r.killed_at(point) for r in runs]
    if point in ONCE_ONLY:
        assert killed == [True, False, False], [r.trace[-5:] for r in runs]
        for later in runs[1:]:
            assert later.returncode == 0, later.stderr[-2000:]
            assert not later.reached(point)
        assert runs[1].result["state"] == "committed"
    else:
        assert killed == [True, True, True], [r.trace[-5:] for r in runs]
    if point == "before:commit":  # the 3rd time by the roll back (trial_crashed) and re-install from disk
        assert runs[1].trace == ["write:trial", "before:commit"]  # the 2nd: in recovery
        assert runs[2].reached("rollback:start")
        assert runs[2].reached("before:download")
        assert not runs[2].reached("write:model.onnx")  # re-installed from disk: nothing fetched
    result = ok(run_child(data, world["artifacts"], world["states"]["v2"]))
    assert (result["active"], result["previous"], result["state"], result["matches"]) == (
        "v2",
        "v1",
        "committed",
        True,
    )


def test_once_only_points_are_points_of_the_install():
    assert set(ONCE_ONLY) <= set(POINTS)


# rollbacks, rejections and garbage collection


def journal_of(data: Path) -> list[dict]:
    return Journal(data / "journal" / "default.jsonl").read()


def then_next_install_commits(world, data: Path, artifact_id: str, previous: str) -> None:
    result = ok(run_child(data, world["artifacts"], world["states"][artifact_id]))
    assert (result["active"], result["previous"], result["state"], result["matches"]) == (
        artifact_id,
        previous,
        "committed",
        True,
    )
    check_invariant(data, {artifact_id})


@pytest.mark.parametrize("point", COUNTED_ROLLBACK_POINTS)
def test_trial_rollback_survives_a_kill_at(world, tmp_path, point):
    """v2 on trial fails a request and is rolled back to v1, counting one rejection; killed mid-way."""
    data = tmp_path / "data"
    shutil.copytree(world["v2_on_trial"], data)
    v2 = world["states"]["v2"]
    killed = run_child(data, world["artifacts"], v2, crash_at=point, opts=ROLLBACK_OPTS)
    assert killed.killed_at(point), f"{point} was never reached: {killed.trace[-5:]} {killed.stderr[-2000:]}"
    assert "rollback:start" in killed.trace  # killed inside the rollback
    check_invariant(data, {"v1", "v2"})
    assert SlotStore(data, "default").read_refusals().get("v2", 0) <= 1

    result = ok(run_child(data, world["artifacts"], v2, opts=ROLLBACK_OPTS))
    # From a durable decision the restart finishes the rollback, and v2 (rejected once, max_rollbacks 1) is
    # refused; before it, v2 is still on trial and the failing request rolls it back in this run.
    state = "rolled_back:trial_failure_rate" if point in NOT_DURABLE else "refused:rolled_back"
    assert (result["active"], result["previous"], result["serving"], result["matches"]) == (
        "v1",
        None,
        "v1",
        True,
    )
    assert result["state"] == state
    assert (result["failed_artifact"], result["failure_code"]) == (
        ("v2", "trial_failure_rate") if point in NOT_DURABLE else ("v2", "release_refused_after_rollbacks")
    )
    store = SlotStore(data, "default")
    assert store.read_refusals() == {"v2": 1}  # counted exactly once, whatever the point
    assert store.read_trial() is None
    assert pending_rollback(journal_of(data)) is None
    check_invariant(data, {"v1"})
    then_next_install_commits(world, data, "v3", previous="v1")


@pytest.mark.parametrize("point", UNCOUNTED_ROLLBACK_POINTS)
def test_disabled_artifact_rollback_survives_a_kill_at(world, tmp_path, point):
    """Committed v2 is disabled fleet-wide: the device rolls back to v1 (no rejection counted); killed."""
    data = tmp_path / "data"
    shutil.copytree(world["installed_v2"], data)
    disable = world["states"]["disable-v2"]
    killed = run_child(data, world["artifacts"], disable, crash_at=point)
    assert killed.killed_at(point), f"{point} was never reached: {killed.trace[-5:]} {killed.stderr[-2000:]}"
    assert "rollback:start" in killed.trace
    assert not killed.reached("refusals:before")  # an operator path counts no rejection
    check_invariant(data, {"v1", "v2"})

    result = ok(run_child(data, world["artifacts"], disable))
    assert (result["active"], result["previous"], result["serving"], result["matches"]) == (
        "v1",
        None,
        "v1",
        True,
    )
    assert (result["state"], result["failed_artifact"], result["failure_code"]) == (
        "rolled_back:artifact_disabled",  # from the journal when the restart found the rollback done
        "v2",
        "artifact_disabled",
    )
    store = SlotStore(data, "default")
    assert store.read_refusals() == {}
    assert pending_rollback(journal_of(data)) is None
    check_invariant(data, {"v1"})
    then_next_install_commits(world, data, "v3", previous="v1")


@pytest.mark.parametrize("point", ["write:withdrawn", "withdraw:marked"])
def test_disabled_artifact_without_previous_is_withdrawn_despite_a_kill_at(world, tmp_path, point):
    """Committed v1, no previous, is disabled: the device withdraws it (nothing active, files kept); killed
    between the marker's bytes or between the marker and the pointer removal."""
    data = tmp_path / "data"
    shutil.copytree(world["installed_v1"], data)
    disable = world["states"]["disable-v1"]
    killed = run_child(data, world["artifacts"], disable, crash_at=point)
    assert killed.killed_at(point), f"{point} was never reached: {killed.trace[-5:]} {killed.stderr[-2000:]}"
    check_invariant(data, {"v1", None})

    result = ok(run_child(data, world["artifacts"], disable))
    assert (result["active"], result["previous"], result["serving"]) == (None, None, None)
    assert (result["state"], result["failed_artifact"]) == ("withdrawn:artifact_disabled", "v1")
    store = SlotStore(data, "default")
    assert store.read_refusals() == {}  # an operator path counts no rejection
    check_invariant(data, {None})
    then_next_install_commits(world, data, "v1", previous=None)  # re-enabled: from disk, committed


@pytest.mark.parametrize("point", REJECTION_POINTS)
def test_rejected_candidate_is_counted_once_despite_a_kill_at(world, tmp_path, point):
    """A candidate failing its health check counts one rejection; killed around the count's write."""
    data = tmp_path / "data"
    shutil.copytree(world["installed_v1"], data)
    bad, opts = world["states"]["bad"], ("--max-rollbacks", "1")
    killed = run_child(data, world["artifacts"], bad, crash_at=point, opts=opts)
    assert killed.killed_at(point), f"{point} was never reached: {killed.trace[-5:]} {killed.stderr[-2000:]}"
    assert killed.reached("before:health")
    assert not killed.reached("before:switch")
    check_invariant(data, {"v1"})

    result = ok(run_child(data, world["artifacts"], bad, opts=opts))
    assert (result["active"], result["serving"], result["matches"]) == ("v1", "v1", True)
    # The torn `failed` line leaves the attempt interrupted: it is retried (and fails again). From a journaled
    # `failed`, the restart makes sure the rejection is counted, and the candidate is refused.
    journaled = point != "write:journal#6"
    assert result["state"] == ("refused:rolled_back" if journaled else "failed:health_output_not_finite")
    assert SlotStore(data, "default").read_refusals() == {"bad": 1}
    then_next_install_commits(world, data, "v2", previous="v1")


@pytest.mark.parametrize("point", GC_POINTS)
def test_gc_survives_a_kill_at(world, tmp_path, point):
    """Committing v3 over v2 collects v1; killed mid-collection, the restart finishes it."""
    data = tmp_path / "data"
    shutil.copytree(world["installed_v2"], data)
    store = SlotStore(data, "default")
    v1_key = store.read_previous().version
    v3 = world["states"]["v3"]
    killed = run_child(data, world["artifacts"], v3, crash_at=point)
    assert killed.killed_at(point), f"{point} was never reached: {killed.trace[-5:]} {killed.stderr[-2000:]}"
    assert killed.reached("after:commit")  # GC runs after the commit only
    check_invariant(data, {"v3"})
    assert store.read_previous().artifact_id == "v2"
    assert (v1_key in store.versions()) == (point == "gc:start")

    result = ok(run_child(data, world["artifacts"], v3))
    assert (result["active"], result["previous"], result["state"], result["matches"]) == (
        "v3",
        "v2",
        "committed",
        True,
    )
    assert sorted(store.versions()) == sorted([store.read_active().version, store.read_previous().version])
    assert not (store.dir / "trash").exists() or not any((store.dir / "trash").iterdir())
    then_next_install_commits(world, data, "v4", previous="v3")
    assert len(store.versions()) == 2
