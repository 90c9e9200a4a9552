"""The device queue: byte cap, drop policy, ordering, and a power cut (SIGKILL) in the middle of appends."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from edgefleet.agent.telemetry.queue import (
    PAGE_CACHE_KIB,
    QueueCorruptError,
    QueueUnavailableError,
    TelemetryQueue,
    corrupt_path,
    loss_event,
    open_queue,
)
from edgefleet.protocol.telemetry import PRIORITY_KEEP, PRIORITY_METRICS, PRIORITY_NOTICE


def _window(q: TelemetryQueue, n: int = 0, pad: int = 200) -> int | None:
    return q.append(
        boot_id="b", kind="window", label="window", priority=PRIORITY_METRICS, body={"n": n, "p": "x" * pad}
    )


def _event(q: TelemetryQueue, kind: str, priority: int, n: int = 0, pad: int = 200) -> int | None:
    return q.append(
        boot_id="b", kind="event", label=f"event.{kind}", priority=priority, body={"n": n, "p": "x" * pad}
    )


def test_sequences_increase_and_are_never_reused(tmp_path: Path) -> None:
    with TelemetryQueue(tmp_path / "q.db") as q:
        seqs = [_window(q, i) for i in range(5)]
        assert seqs == [1, 2, 3, 4, 5]
        assert q.delete([4, 5, 99]) == 2
    with TelemetryQueue(tmp_path / "q.db") as q:  # a new boot
        assert _window(q) == 6
        assert [r.seq for r in q.oldest(10)] == [1, 2, 3, 6]
        assert [r.seq for r in q.newest(2, kind="window")] == [6, 3]


def test_byte_cap_drops_oldest_metrics_first_and_keeps_events(tmp_path: Path) -> None:
    with TelemetryQueue(tmp_path / "q.db", max_bytes=4096) as q:
        _event(q, "update", PRIORITY_KEEP, 1)
        _event(q, "degraded", PRIORITY_NOTICE, 2)
        for i in range(100):
            _window(q, i)
        _event(q, "security", PRIORITY_KEEP, 3)
        stats = q.stats()
        assert stats.bytes <= 4096
        assert stats.bytes == sum(r.size_bytes for r in q.oldest(1000))
        kept = q.oldest(1000)
        assert [r.body["n"] for r in kept if r.kind == "event"] == [1, 2, 3]
        windows = [r.body["n"] for r in kept if r.kind == "window"]
        assert windows == list(range(100 - len(windows), 100))  # the newest windows survive
        assert stats.dropped == {"window": 100 - len(windows)}


def test_a_record_never_evicts_a_higher_priority_one(tmp_path: Path) -> None:
    with TelemetryQueue(tmp_path / "q.db", max_bytes=2048) as q:
        while _event(q, "security", PRIORITY_KEEP) is not None and q.stats().bytes < 2048 - 250:
            pass
        before = [r.seq for r in q.oldest(100)]
        assert _window(q) is None  # no room, and nothing of its priority or lower to evict
        assert _event(q, "degraded", PRIORITY_NOTICE) is None
        assert [r.seq for r in q.oldest(100)] == before
        assert q.stats().dropped == {"window": 1, "event.degraded": 1}
        # same priority: the oldest of it goes
        newest = _event(q, "rollback", PRIORITY_KEEP)
        after = [r.seq for r in q.oldest(100)]
        assert newest == after[-1]
        assert after[0] != before[0]
        assert q.stats().dropped["event.security"] >= 1


def test_a_record_larger_than_the_cap_is_dropped_and_counted(tmp_path: Path) -> None:
    with TelemetryQueue(tmp_path / "q.db", max_bytes=1024) as q:
        assert _window(q, pad=5000) is None
        assert q.stats().dropped == {"window": 1}
        assert q.stats().records == 0


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    path.write_bytes(b"garbage" * 1000)
    with pytest.raises(QueueCorruptError):
        TelemetryQueue(path)


def _malformed(path: Path) -> bytes:
    """A real queue file whose pages were overwritten: valid header, broken b-tree."""
    with TelemetryQueue(path) as q:
        for i in range(50):
            _window(q, i, pad=2000)
    data = bytearray(path.read_bytes())
    data[4096 : 4096 * 6] = b"\xff" * (4096 * 5)
    path.write_bytes(bytes(data))
    return bytes(data)


@pytest.mark.parametrize("damage", ["garbage", "malformed"])
def test_open_queue_sets_a_corrupt_file_aside_and_starts_fresh(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "telemetry" / "queue.db"
    path.parent.mkdir()
    if damage == "garbage":
        bad = b"garbage" * 1000
        path.write_bytes(bad)
    else:
        bad = _malformed(path)
    with pytest.raises(QueueCorruptError):
        TelemetryQueue(path)
    queue, loss = open_queue(path)
    with queue:
        assert loss is not None
        assert (loss.code, loss.in_memory, loss.kept_path) == (
            "telemetry_queue_corrupt",
            False,
            corrupt_path(path),
        )
        assert corrupt_path(path).name == "queue.corrupt.db"
        assert corrupt_path(path).read_bytes() == bad  # kept for forensics
        assert _window(queue) == 1  # a fresh, durable queue at the same place
        assert queue.path == path
    kind, code, details = loss_event(loss)
    assert (kind, code) == ("health", "telemetry_lost")
    assert details["reason"] == "telemetry_queue_corrupt"
    assert details["kept"] == "queue.corrupt.db"
    with TelemetryQueue(path) as again:
        assert [r.seq for r in again.oldest(10)] == [1]


def test_at_most_one_corrupt_queue_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    for n in range(3):
        path.write_bytes(f"bad file {n} ".encode() * 500)
        Path(f"{path}-wal").write_bytes(b"stale wal" * 100)  # left by the broken file's last writer
        queue, loss = open_queue(path)
        queue.close()
        assert loss is not None
    kept = {p.name for p in tmp_path.iterdir() if "corrupt" in p.name}
    assert "queue.corrupt.db" in kept
    assert kept <= {"queue.corrupt.db", "queue.corrupt.db-wal", "queue.corrupt.db-shm"}  # one file set
    assert corrupt_path(path).read_bytes().startswith(b"bad file 2 ")
    with TelemetryQueue(path) as q:  # a fresh queue: nothing of the broken files leaked into it
        assert q.stats().records == 0


def test_open_queue_keeps_an_intact_queue(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    with TelemetryQueue(path) as q:
        _window(q)
    queue, loss = open_queue(path)
    with queue:
        assert loss is None
        assert queue.stats().records == 1
    assert not corrupt_path(path).exists()


def test_a_queue_that_cannot_be_opened_is_held_in_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "telemetry"
    blocker.write_text("a file where the directory should be")
    with pytest.raises(QueueUnavailableError):
        TelemetryQueue(blocker / "queue.db")
    queue, loss = open_queue(blocker / "queue.db")
    with queue:
        assert loss is not None
        assert (loss.code, loss.in_memory, loss.kept_path) == ("telemetry_queue_unavailable", True, None)
        assert _window(queue) == 1  # telemetry still flows for this run
    assert blocker.read_text() == "a file where the directory should be"  # nothing was moved or deleted


_WRITER = textwrap.dedent(
    """
    import sys
    from edgefleet.agent.telemetry.queue import TelemetryQueue
    q = TelemetryQueue(sys.argv[1], max_bytes=64 * 1024**2)
    n = 0
    while True:
        n += 1
        seq = q.append(boot_id="b", kind="window", label="window", priority=0, body={"n": n, "p": "y" * 300})
        sys.stdout.write(f"{seq}\\n")
        sys.stdout.flush()
    """
)


@pytest.mark.parametrize("after_lines", [5, 300])
def test_power_cut_while_appending_loses_at_most_the_unacknowledged_tail(
    tmp_path: Path, after_lines: int
) -> None:
    path = tmp_path / "q.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    committed: list[int] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while len(committed) < after_lines and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        committed.append(int(line))
    os.kill(proc.pid, signal.SIGKILL)  # mid-append, most likely inside a transaction
    proc.wait()
    assert len(committed) == after_lines
    committed += [int(line) for line in proc.stdout.read().split()]  # printed before the kill
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    raw.close()
    with TelemetryQueue(path) as q:
        seqs = [r.seq for r in q.oldest(100_000)]
        # every append the writer saw committed is there, in order, without holes; at most one more
        assert seqs[: len(committed)] == committed
        assert seqs == list(range(1, len(seqs) + 1))
        assert len(seqs) - len(committed) <= 1
        assert q.stats().bytes == sum(r.size_bytes for r in q.oldest(100_000))
        assert _window(q) == seqs[-1] + 1


def test_a_backlog_is_not_held_in_memory(tmp_path: Path) -> None:
    """SQLite's page cache is bounded (``PAGE_CACHE_KIB``, against SQLite's 2000 KiB): a device back from a
    long offline period opens a queue of several MiB, and its integrity check reads every page."""
    path = tmp_path / "q.db"
    q = TelemetryQueue(path, max_bytes=4 * 1024**2)
    for n in range(1500):
        _window(q, n, pad=2000)
    q.close()
    assert path.stat().st_size > 2 * 1024**2
    q = TelemetryQueue(path, max_bytes=4 * 1024**2)
    try:
        assert q._db.execute("PRAGMA cache_size").fetchone()[0] == -PAGE_CACHE_KIB
        assert len(q.oldest(2000)) > 1000  # still all there, read through the small cache
    finally:
        q.close()
