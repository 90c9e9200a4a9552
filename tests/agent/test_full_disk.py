"""A full disk, on a real small filesystem (a size-limited tmpfs) when this test may mount one, by injection
otherwise: downloads are refused before their first byte with ``disk_full``; the telemetry queue stays within
its cap on disk and keeps its update events and acks; serving goes on."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np
import pytest
from tests.agent.test_download import DATA, NAME, SHA, loopback
from tests.serve.conftest import classifier, write_artifact, x

from edgefleet.agent.install.download import Downloader, DownloadPolicy, disk_free_bytes
from edgefleet.agent.runtime.ort import OnnxRuntimeAdapter
from edgefleet.agent.serve import InferenceService, StaticSource
from edgefleet.agent.telemetry import TelemetryRecorder
from edgefleet.agent.telemetry.queue import RESERVE_RETRY_WRITES, TelemetryQueue
from edgefleet.trust.errors import DiskFullError
from edgefleet.trust.events import ListSink

MIB = 1024 * 1024
POLICY = DownloadPolicy(reserve_bytes=256 * 1024, deadline_s=30, grace_s=0.3, read_timeout_s=5)


def _mount_tmpfs(path: Path, size_bytes: int) -> bool:
    """A real small filesystem, if this process may mount one (root in a container often may not)."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(path)],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


@pytest.fixture(params=["tmpfs", "injected"])
def small_disk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Path, bool]]:
    """(a directory on a real 3 MiB filesystem, True), skipped where mounting is not allowed; or (a plain
    directory, False: the test injects the full disk)."""
    root = tmp_path / "small"
    mounted = request.param == "tmpfs" and _mount_tmpfs(root, 3 * MIB)
    if request.param == "tmpfs" and not mounted:
        pytest.skip("cannot mount a tmpfs here (no mount rights); the injected variant runs instead")
    root.mkdir(exist_ok=True)
    yield root, mounted
    if mounted:
        subprocess.run(["umount", "-l", str(root)], capture_output=True, timeout=10, check=False)


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[tuple[object, httpx.Client, str]]:
    root = tmp_path / "mirror"
    (root / "a" / "b").mkdir(parents=True)
    (root / NAME).write_bytes(DATA)
    second = bytes(reversed(DATA))
    (root / "a" / "b" / "golden.npz").write_bytes(second)
    served = loopback.Mirror(root)
    client = httpx.Client()
    yield served, client, hashlib.sha256(second).hexdigest()
    client.close()
    served.close()


def _fill(root: Path, leave_bytes: int) -> Path:
    """Ballast that leaves about ``leave_bytes`` free on the filesystem of ``root``."""
    ballast = root / "ballast"
    free = disk_free_bytes(root)
    with open(ballast, "ab") as fh:
        fh.write(bytes(max(0, free - leave_bytes)))
    return ballast


def test_an_artifact_larger_than_the_free_space_is_refused_before_its_first_byte(small_disk, mirror) -> None:
    root, real = small_disk
    served, client, second_sha = mirror
    events = ListSink()

    def injected_free(staging: Path) -> int:  # what a disk with 1.5 MiB free reports as files land on it
        return int(1.5 * MIB) - sum(p.stat().st_size for p in staging.iterdir())

    kw = {} if real else {"free_bytes": injected_free}
    if real:
        _fill(root, int(1.5 * MIB))
    dl = Downloader(root / "staging", client, POLICY, events=events, **kw)  # type: ignore[arg-type]
    files = {SHA: len(DATA), second_sha: len(DATA)}  # 2 MiB of files + the reserve: does not fit
    with pytest.raises(DiskFullError) as err:
        dl.ensure_space(files, keep=files)
    assert err.value.code == "disk_full"
    assert "2097152 to download" in str(err.value.details["expected"])
    assert served.requests == []  # refused before asking for a byte
    assert events.codes == ["disk_full"]
    assert list((root / "staging").iterdir()) == []
    # One file of it fits: fetched, verified, on the real filesystem when there is one.
    path = dl.fetch(f"{served.url}/{NAME}", sha256=SHA, length=len(DATA))
    assert path.read_bytes() == DATA
    # The rest does not: refused before its first byte, and the staged file is untouched.
    requests = len(served.requests)
    with pytest.raises(DiskFullError):
        dl.ensure_space(files, keep=files)
    with pytest.raises(DiskFullError):
        dl.fetch(f"{served.url}/a/b/golden.npz", sha256=second_sha, length=len(DATA))
    assert len(served.requests) == requests
    assert path.read_bytes() == DATA


def test_a_full_disk_keeps_the_queue_in_its_cap_its_update_events_and_serving_going(
    small_disk, tmp_path: Path
) -> None:
    root, real = small_disk
    queue = TelemetryQueue(root / "telemetry" / "queue.db", max_bytes=2 * MIB)
    mono = [0.0]
    recorder = TelemetryRecorder(
        queue, boot_id="b1", window_s=1, clock=lambda: mono[0], wall_clock=lambda: datetime.now(timezone.utc)
    )
    artifact = write_artifact(tmp_path / "v1", classifier(1))
    service = InferenceService(StaticSource(artifact), OnnxRuntimeAdapter(), metrics=recorder)
    if real:
        ballast = _fill(root, 400 * 1024)  # the models and logs grew: 400 KiB left for the queue
    else:
        queue._db.execute("PRAGMA max_page_count=100")  # injected: SQLite's own "disk is full" at ~400 KiB
    answered = 0
    for i in range(600):  # 600 windows of real serving, each ~1 KiB, plus update events
        answer = service.predict({"x": x(seed=i)})
        answered += int(np.isfinite(answer.outputs["probs"]).all())
        mono[0] += 1.0
        if i % 100 == 0:
            assert recorder.record_event("update", "install_started", {"i": i}) is not None
    assert answered == 600  # serving never noticed
    recorder.tick()
    stats = queue.stats()
    assert stats.dropped.get("window", 0) > 0  # the drop policy made room: oldest windows went first
    assert queue.cap_bytes < queue.max_bytes  # the cap came down to what the disk holds
    kept = [r for r in queue.oldest(10_000) if r.kind == "event"]
    assert len(kept) == 6  # no update event was lost
    if real:  # the queue's whole footprint on disk (database, WAL, reserve) stayed within the disk's room
        footprint = sum(p.stat().st_size for p in (root / "telemetry").iterdir())
        assert footprint <= 2 * MIB
        assert recorder.write_failures == 0  # every write went in or was dropped by the policy
    # Acks still delete (the uploader is not stuck resending forever).
    acked = [r.seq for r in queue.oldest(20)]
    assert queue.delete(acked) == 20
    # Room again: after a few writes the queue takes its reserve back and the full cap returns.
    if real:
        ballast.unlink()
    else:
        queue._db.execute("PRAGMA max_page_count=1073741823")
    for _ in range(RESERVE_RETRY_WRITES + 1):
        recorder.record_event("health", "check", {})
    assert queue.cap_bytes == queue.max_bytes
    queue.close()
