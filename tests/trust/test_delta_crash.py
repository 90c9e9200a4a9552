"""A power cut while a file is rebuilt from a delta: a real installer process (the TUF fetcher over loopback
HTTP, ONNX Runtime loading the result) SIGKILLed at the ``delta:model.onnx`` crash point, with the partial
rebuilt file on disk, then restarted without the fault.

After the kill: the version the slot ran keeps being current and verifies, no version of the new artifact
exists, and the half-written file lies only in staging. After the restart: the interrupted attempt is
journaled ``interrupted`` (and logged), staging is cleared, and the retry gets the new version, through the
delta again (the device still holds its base), verified and serving.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
from tests.agent.crash.artifacts import assignment, backbone_head, desired, write_artifact

from edgefleet.agent.install import CRASH_ENV_VAR
from edgefleet.agent.install.journal import Journal
from edgefleet.agent.install.slots import SlotStore

from .fleet import Fleet, enrolled_device
from .test_delta_real_models import _publish

CHILD = Path(__file__).with_name("delta_crash_child.py")


def _run(data: Path, desired_json: Path, identity: Path, crash_at: str | None = None):
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV_VAR}
    if crash_at:
        env[CRASH_ENV_VAR] = crash_at
    return subprocess.run(
        [sys.executable, str(CHILD), str(data), str(desired_json), str(identity)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def _result(proc) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("crash_at", ["delta:model.onnx", "delta:model.onnx#3"])
def test_a_kill_mid_rebuild_keeps_the_old_version_and_the_restart_upgrades(
    fleet: Fleet, tmp_path, crash_at
) -> None:
    arts = tmp_path / "arts"
    m1 = write_artifact(arts, "v1", backbone_head(0.0))
    m2 = write_artifact(arts, "v2", backbone_head(0.05), version="2.0.0", release_counter=2)
    _publish(fleet, arts / "v1")
    assert "/model.onnx.efdelta" in _publish(fleet, arts / "v2")  # a delta from 1.0.0, which the device runs

    ddir, identity, mirror = enrolled_device(fleet, tmp_path / "device")
    identity_json = tmp_path / "identity.json"
    identity_json.write_text(json.dumps(asdict(identity)))
    states = {}
    for gen, (name, manifest) in enumerate((("v1", m1), ("v2", m2)), start=1):
        states[name] = tmp_path / f"desired-{name}.json"
        slots = {"default": assignment(name, manifest)}
        states[name].write_text(json.dumps(desired(slots, generation=gen).to_dict()))
    store = SlotStore(ddir.root, "default")
    try:
        first = _result(_run(ddir.root, states["v1"], identity_json))
        assert (first["serving"], first["delta_files"]) == ("v1", 0)

        killed = _run(ddir.root, states["v2"], identity_json, crash_at)
        trace = [
            line.removeprefix("crash-point ") for line in killed.stderr.splitlines() if "crash-point" in line
        ]
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
        name, _, nth = crash_at.partition("#")
        assert trace[-1] == name, trace[-5:]
        assert trace.count(name) == int(nth or 1), trace[-5:]
        # nothing half-written is current: v1 is active and verifies; v2 exists only as a partial in staging
        active = store.read_active()
        assert active is not None
        assert active.artifact_id == "v1"
        store.verify(active.version)
        assert [store.read_manifest(k).version for k in store.versions()] == ["1.0.0"]
        partials = list(store.staging_dir.rglob(".model.onnx.delta-partial"))
        assert len(partials) == 1
        assert 0 < partials[0].stat().st_size < m2.files[0].length

        downloads = ddir.root / "downloads"
        assert [p for p in downloads.iterdir() if not p.name.endswith(".partial")], "the delta lies whole"

        restarted = _run(ddir.root, states["v2"], identity_json)
        after = _result(restarted)
    finally:
        mirror.close()
    assert after["serving"] == "v2", after
    assert after["fallbacks"] == {}, after  # model.onnx (and golden.npz) rebuilt through their deltas again
    assert after["delta_files"] == 2, after
    assert "event=recover_interrupted slot=default artifact=v2" in restarted.stderr
    events = [r.get("event") for r in Journal(ddir.root / "journal" / "default.jsonl").read()]
    assert "interrupted" in events
    active = store.read_active()
    assert active is not None
    assert active.artifact_id == "v2"
    store.verify(active.version)
    assert not list(store.staging_dir.rglob("*delta-partial"))
    assert list(downloads.iterdir()) == [], "the retry used the delta left behind and removed it"
