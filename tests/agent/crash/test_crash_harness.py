"""Power cut at every step: SIGKILL a real agent process at each named point of install and activation, and
between the bytes of each durable write, restart it, and check the never-brick invariant.

Invariant after the kill: the ``active`` pointer is absent (fresh device) or names a version whose files all
verify against its manifest, and it is the old or the new release (with the old one as ``previous`` when the
new one is active). Then an agent started without the fault completes the install: the new release is active,
committed, and answers its golden inputs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from crash.artifacts import assignment, classifier, desired, write_artifact
from edgefleet.agent.install import CRASH_ENV_VAR
from edgefleet.agent.slots import SlotStore

CHILD = Path(__file__).with_name("child.py")
STEPS = ("download", "verify", "stage", "load", "health", "switch", "commit")
WRITES = ("model.onnx", "golden.npz", "manifest.json", "trial", "active", "journal", "journal#4", "journal#9")
POINTS = [f"{when}:{step}" for step in STEPS for when in ("before", "after")] + [f"write:{w}" for w in WRITES]


def run_child(data: Path, artifacts: Path, desired_json: Path, crash_at: str | None = None):
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV_VAR}
    if crash_at:
        env[CRASH_ENV_VAR] = crash_at
    return subprocess.run(
        [sys.executable, str(CHILD), str(data), str(artifacts), str(desired_json)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Two releases on disk and a data dir where the first is installed and committed."""
    root = tmp_path_factory.mktemp("crash")
    artifacts = root / "artifacts"
    states = {}
    for generation, (artifact_id, seed) in enumerate((("v1", 1), ("v2", 2)), start=1):
        manifest = write_artifact(artifacts, artifact_id, classifier(seed), release_counter=generation)
        path = root / f"desired-{artifact_id}.json"
        state = desired({"default": assignment(artifact_id, manifest)}, generation=generation)
        path.write_text(json.dumps(state.to_dict()))
        states[artifact_id] = path
    installed_v1 = root / "installed-v1"
    proc = run_child(installed_v1, artifacts, states["v1"])
    assert proc.returncode == 0, proc.stderr
    return {"artifacts": artifacts, "states": states, "installed_v1": installed_v1}


def check_invariant(data: Path, old: str | None, new: str) -> str | None:
    store = SlotStore(data, "default")
    active = store.read_active()
    if active is None:
        assert old is None, "an installed device lost its active version"
        return None
    assert active.artifact_id in {old, new}
    manifest = store.verify(active.version)  # every file present and intact
    assert manifest.release_counter == active.release_counter
    if old is not None and active.artifact_id == new:
        previous = store.read_previous()
        assert previous is not None
        assert previous.artifact_id == old
        store.verify(previous.version)
    return active.artifact_id


def crash_then_recover(world, tmp_path: Path, scenario: str, point: str) -> None:
    data = tmp_path / "data"
    if scenario == "upgrade":
        shutil.copytree(world["installed_v1"], data)
        old, new = "v1", "v2"
    else:
        old, new = None, "v1"
    desired_json = world["states"][new]
    killed = run_child(data, world["artifacts"], desired_json, crash_at=point)
    assert killed.returncode == -signal.SIGKILL, f"{point} was never reached: {killed.stdout} {killed.stderr}"
    check_invariant(data, old, new)
    done = run_child(data, world["artifacts"], desired_json)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert (result["active"], result["serving"], result["state"], result["matches"]) == (
        new,
        new,
        "committed",
        True,
    )
    assert result["previous"] == old
    check_invariant(data, old, new)


@pytest.mark.parametrize("point", POINTS)
def test_upgrade_survives_a_kill_at(world, tmp_path, point):
    crash_then_recover(world, tmp_path, "upgrade", point)


def test_upgrade_survives_a_kill_between_the_pointer_writes(world, tmp_path):
    crash_then_recover(world, tmp_path, "upgrade", "write:previous")


@pytest.mark.slow
@pytest.mark.parametrize("point", POINTS)
def test_first_install_survives_a_kill_at(world, tmp_path, point):
    crash_then_recover(world, tmp_path, "fresh", point)


@pytest.mark.slow
@pytest.mark.parametrize("point", POINTS)
def test_repeated_kills_at_the_same_point_then_success(world, tmp_path, point):
    """Killed three times in a row at the same point (each retry starts from the state the last left)."""
    data = tmp_path / "data"
    shutil.copytree(world["installed_v1"], data)
    for _ in range(3):
        killed = run_child(data, world["artifacts"], world["states"]["v2"], crash_at=point)
        assert killed.returncode == -signal.SIGKILL or killed.returncode == 0, killed.stderr
        check_invariant(data, "v1", "v2")
    done = run_child(data, world["artifacts"], world["states"]["v2"])
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert (result["active"], result["state"], result["matches"]) == ("v2", "committed", True)
