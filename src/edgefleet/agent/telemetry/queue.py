"""The device's durable telemetry queue: one SQLite file in WAL mode, bounded in bytes.

Over 450 lines: the durability, the drop policy, the disk-full reserve and the set-aside of a corrupt file
all act on one connection under one lock.

Durability: every append is one transaction committed with ``synchronous=FULL``; a power cut (or SIGKILL)
while appending loses at most the record being appended and never corrupts the file (SQLite's WAL recovery).

Drop policy when an append would pass ``max_bytes`` (documented in docs/telemetry.md):

1. Evict the *oldest* records of the *lowest* priority first (metrics windows before notices before
   update/rollback/security/clock events).
2. A record never evicts a record of higher priority. Records of its own priority are evicted oldest first.
3. If that still does not make room, the new record itself is dropped.

Every dropped record is counted by kind in cumulative counters (``dropped``) that the uploader reports.
Sequences come from ``AUTOINCREMENT``: strictly increasing for the life of the file, never reused, across
boots and after deletes, so the server can order a device's records without trusting its wall clock.

A full disk never stops the agent either: the file's footprint stays near ``max_bytes`` (the WAL is
checkpointed every ``WAL_CHECKPOINT_PAGES`` pages and truncated to ``WAL_LIMIT_BYTES``). Beside the file the
queue keeps a *reserve* (``<name>.reserve``, ``RESERVE_BYTES`` of zeros). When the disk fills up (other files
grew), a write that fails with SQLITE_FULL gives the reserve back, checkpoints, and lowers the queue's cap to
what it holds now (the drop policy then evicts old windows instead of growing the file), and tries again: so
acknowledged records can still be deleted and update, rollback and security events still be written. Only
if that fails too, ``QueueDiskFullError`` (``disk_full``): nothing half written, the queued records intact,
the recorder counts it and serving goes on. Every ``RESERVE_RETRY_WRITES`` writes the queue tries to take
the reserve again; when it can, the full cap is back.

A corrupt file never stops the agent: ``open_queue`` moves it aside (one kept for forensics,
``<name>.corrupt.db``), starts a fresh queue and says so (``QueueLoss``), so the caller can record that
telemetry was lost; a queue that cannot be opened at all (disk, permissions) is replaced by one in memory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from edgefleet.durable import create_private_file
from edgefleet.protocol.canonical import canonical_json
from edgefleet.protocol.errors import EdgefleetError, InvalidDocumentError

__all__ = [
    "CORRUPT_SUFFIX",
    "QueueCorruptError",
    "QueueDiskFullError",
    "QueueLoss",
    "QueueStats",
    "QueueUnavailableError",
    "QueuedRecord",
    "TelemetryQueue",
    "corrupt_path",
    "loss_event",
    "open_queue",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    boot_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    label TEXT NOT NULL,
    priority INTEGER NOT NULL,
    size_bytes INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS records_priority_seq ON records (priority, seq);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
_BYTES = "queue.bytes"
WAL_CHECKPOINT_PAGES = 64
"""checkpoint the WAL into the database every this many pages (SQLite's default, 1000, lets it reach 4 MB)"""
WAL_LIMIT_BYTES = 512 * 1024
"""after a checkpoint the WAL file is truncated to at most this"""
PAGE_CACHE_KIB = 256
"""SQLite's page cache for the queue (its default is 2000 KiB). The queue is written at the end and read from
the front, so a small cache costs little, and a device back from a long offline period does not keep 2 MiB of
its backlog resident: opening a 6.9 MiB backlog added 2.06 MiB at the default, 0.5 MiB with this
(measured)."""
RESERVE_BYTES = 256 * 1024
RESERVE_RETRY_WRITES = 50
_DROP_PREFIX = "dropped."


class QueueCorruptError(EdgefleetError):
    """The file is not a sound SQLite database (or not our queue): its contents cannot be trusted."""

    code = "telemetry_queue_corrupt"


class QueueUnavailableError(EdgefleetError):
    """SQLite could not open or write the file (disk full, read-only, permissions); it may be intact."""

    code = "telemetry_queue_unavailable"


class QueueDiskFullError(QueueUnavailableError):
    """The disk cannot take the write (SQLITE_FULL, ENOSPC): nothing was written, the queue is intact."""

    code = "disk_full"


def _is_full(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == 13 or "full" in str(exc).lower()  # SQLITE_FULL


@dataclass(frozen=True)
class QueuedRecord:
    seq: int
    boot_id: str
    kind: str
    """``window`` or ``event``"""
    label: str
    """what a drop is counted as: ``window`` or ``event.<kind>``"""
    priority: int
    size_bytes: int
    body: dict[str, Any]
    """the window or event payload (JSON)"""


@dataclass(frozen=True)
class QueueStats:
    records: int
    bytes: int
    dropped: dict[str, int]


class TelemetryQueue:
    """Thread-safe (one connection behind a lock). ``max_bytes`` bounds the sum of record bodies."""

    def __init__(self, path: Path | str, *, max_bytes: int = 8 * 1024**2, synchronous: str = "FULL") -> None:
        if max_bytes < 1024:
            raise InvalidDocumentError("queue cap too small", code="invalid_queue_cap", expected=">= 1024")
        if synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise InvalidDocumentError("bad synchronous mode", expected="FULL|NORMAL|EXTRA", got=synchronous)
        self.path = Path(path)
        try:
            if str(path) != ":memory:":
                create_private_file(self.path)  # 0600 (its WAL/SHM too) in a 0700 directory when created
        except OSError as exc:
            raise QueueUnavailableError(f"telemetry queue directory: {exc}", got=str(self.path)) from exc
        self.max_bytes = max_bytes
        self.cap_bytes = max_bytes
        """the cap in force: ``max_bytes``, or less while the disk is full"""
        self._reserve = None if str(path) == ":memory:" else self.path.with_name(self.path.name + ".reserve")
        self._writes_since_full = 0
        self._lock = threading.Lock()
        db: sqlite3.Connection | None = None
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={synchronous}")
            db.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
            db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
            db.execute(f"PRAGMA cache_size=-{PAGE_CACHE_KIB}")
            db.executescript(_SCHEMA)
            ok = db.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.OperationalError as exc:  # cannot open/lock/write: not evidence of corruption
            _close_quietly(db)
            raise QueueUnavailableError(f"telemetry queue unavailable: {exc}", got=str(self.path)) from exc
        except sqlite3.DatabaseError as exc:  # "file is not a database", "disk image is malformed"
            _close_quietly(db)
            raise QueueCorruptError(f"telemetry queue unreadable: {exc}", got=str(self.path)) from exc
        if ok != "ok":
            _close_quietly(db)
            raise QueueCorruptError("telemetry queue failed its integrity check", got=str(ok)[:200])
        self._db = db
        self._take_reserve()

    def _take_reserve(self) -> bool:
        """Hold ``RESERVE_BYTES`` of disk for a full-disk moment; False when the disk cannot spare them."""
        if self._reserve is None:
            return True
        try:
            if self._reserve.exists() and self._reserve.stat().st_size >= RESERVE_BYTES:
                return True
            with open(self._reserve, "wb") as fh:
                fh.write(bytes(RESERVE_BYTES))
                fh.flush()
                os.fsync(fh.fileno())
            return True
        except OSError:
            with contextlib.suppress(OSError):
                self._reserve.unlink()
            return False

    def _give_reserve_back(self) -> None:
        if self._reserve is not None:
            with contextlib.suppress(OSError):
                self._reserve.unlink()

    def close(self) -> None:
        with self._lock:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()

    def __enter__(self) -> TelemetryQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing --------------------------------------------------------------------------------------------

    def append(
        self, *, boot_id: str, kind: str, label: str, priority: int, body: dict[str, Any]
    ) -> int | None:
        """Store one record durably. Returns its sequence, or ``None`` when the drop policy dropped it."""
        data = canonical_json(body)
        size = len(data)
        with self._lock:
            return self._write_locked(lambda: self._append_locked(boot_id, kind, label, priority, data, size))

    def _write_locked(self, write: Callable[[], T]) -> T:
        """One write transaction; on a full disk, free the reserve, checkpoint, lower the cap, once more."""
        for attempt in range(2):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = write()
                self._db.execute("COMMIT")
                self._after_write()
                return result
            except sqlite3.Error as exc:
                self._rollback()
                if not _is_full(exc):
                    raise
                if attempt == 1:
                    raise QueueDiskFullError(
                        "the disk cannot take the telemetry queue's write",
                        expected="free disk space",
                        got=str(exc)[:200],
                    ) from exc
                log.warning("event=telemetry_disk_full cap_bytes=%d error=%s", self.cap_bytes, exc)
                self._give_reserve_back()
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                self.cap_bytes = max(1024, min(self.cap_bytes, self._counter(_BYTES)))
                self._writes_since_full = 0
            except BaseException:
                self._rollback()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _after_write(self) -> None:
        if self.cap_bytes >= self.max_bytes:
            return
        self._writes_since_full += 1
        if self._writes_since_full % RESERVE_RETRY_WRITES == 0 and self._take_reserve():
            self.cap_bytes = self.max_bytes  # the disk has room again
            log.info("event=telemetry_disk_recovered cap_bytes=%d", self.cap_bytes)

    def _rollback(self) -> None:
        if self._db.in_transaction:  # SQLite may already have rolled back (e.g. on SQLITE_FULL)
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")

    def _append_locked(
        self, boot_id: str, kind: str, label: str, priority: int, data: bytes, size: int
    ) -> int | None:
        total = self._counter(_BYTES)
        cap = self.cap_bytes
        if size > cap:
            self._bump(_DROP_PREFIX + label, 1)
            return None
        if total + size > cap:
            need = total + size - cap
            victims: list[tuple[int, str, int]] = []
            freed = 0
            rows = self._db.execute(
                "SELECT seq, label, size_bytes FROM records WHERE priority <= ? ORDER BY priority, seq",
                (priority,),
            )
            for seq, victim_label, victim_size in rows:
                victims.append((seq, victim_label, victim_size))
                freed += victim_size
                if freed >= need:
                    break
            if freed < need:
                self._bump(_DROP_PREFIX + label, 1)
                return None
            self._db.executemany("DELETE FROM records WHERE seq = ?", [(v[0],) for v in victims])
            for victim_label in {v[1] for v in victims}:
                self._bump(_DROP_PREFIX + victim_label, sum(1 for v in victims if v[1] == victim_label))
            self._bump(_BYTES, -freed)
        cur = self._db.execute(
            "INSERT INTO records (boot_id, kind, label, priority, size_bytes, body) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (boot_id, kind, label, priority, size, data),
        )
        self._bump(_BYTES, size)
        return int(cur.lastrowid or 0)

    def delete(self, seqs: list[int]) -> int:
        """Delete acknowledged records (unknown sequences are ignored). Returns how many were deleted."""
        if not seqs:
            return 0

        def delete() -> int:
            deleted = 0
            freed = 0
            for seq in seqs:
                row = self._db.execute("SELECT size_bytes FROM records WHERE seq = ?", (seq,)).fetchone()
                if row is None:
                    continue
                self._db.execute("DELETE FROM records WHERE seq = ?", (seq,))
                deleted += 1
                freed += int(row[0])
            self._bump(_BYTES, -freed)
            return deleted

        with self._lock:
            return self._write_locked(delete)

    # --- reading --------------------------------------------------------------------------------------------

    def oldest(self, limit: int) -> list[QueuedRecord]:
        return self._select("ORDER BY seq ASC", (), limit)

    def newest(self, limit: int, *, kind: str) -> list[QueuedRecord]:
        return self._select("WHERE kind = ? ORDER BY seq DESC", (kind,), limit)

    def stats(self) -> QueueStats:
        with self._lock:
            count = int(self._db.execute("SELECT count(*) FROM records").fetchone()[0])
            rows = self._db.execute(
                "SELECT name, value FROM counters WHERE name LIKE ?", (_DROP_PREFIX + "%",)
            ).fetchall()
            total = self._counter(_BYTES)
        dropped = {str(name)[len(_DROP_PREFIX) :]: int(value) for name, value in rows}
        return QueueStats(records=count, bytes=total, dropped=dropped)

    def _select(self, clause: str, params: tuple[Any, ...], limit: int) -> list[QueuedRecord]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT seq, boot_id, kind, label, priority, size_bytes, body FROM records {clause} LIMIT ?",  # noqa: S608  # clause is ours
                (*params, max(0, int(limit))),
            ).fetchall()
        out: list[QueuedRecord] = []
        for seq, boot_id, kind, label, priority, size, body in rows:
            try:
                payload = json.loads(body)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise QueueCorruptError("a queued record is not JSON", got=int(seq)) from exc
            out.append(
                QueuedRecord(int(seq), str(boot_id), str(kind), str(label), int(priority), int(size), payload)
            )
        return out

    def _counter(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def _bump(self, name: str, by: int) -> None:
        self._db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (name, by),
        )


def _close_quietly(db: sqlite3.Connection | None) -> None:
    if db is not None:
        with contextlib.suppress(sqlite3.Error):
            db.close()


CORRUPT_SUFFIX = ".corrupt"
_SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal")


@dataclass(frozen=True)
class QueueLoss:
    """What ``open_queue`` had to give up: the records of the old file did not (all) survive."""

    code: str
    """``telemetry_queue_corrupt`` (moved aside, fresh file) or ``telemetry_queue_unavailable`` (in memory)"""
    message: str
    kept_path: Path | None
    """Where the corrupt file now lies (``None`` when it could not be kept)."""
    in_memory: bool


def corrupt_path(path: Path) -> Path:
    """``queue.db`` -> ``queue.corrupt.db``: still a name SQLite tools open, with its ``-wal`` beside it."""
    return path.with_name(path.stem + CORRUPT_SUFFIX + path.suffix)


def _set_aside(path: Path) -> Path | None:
    """Move ``path`` and its WAL/SHM files to ``corrupt_path``, replacing the one kept before (at most one is
    kept: the newest corruption is the one worth reading). ``None`` when it could not be moved; then it is
    deleted, so the fresh queue does not pick up a stale WAL."""
    target = corrupt_path(path)
    for suffix in _SQLITE_COMPANIONS:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{target}{suffix}")
    kept: Path | None = target
    for suffix in _SQLITE_COMPANIONS:
        source = Path(f"{path}{suffix}")
        try:
            os.replace(source, f"{target}{suffix}")
        except FileNotFoundError:
            continue
        except OSError:
            kept = None
            with contextlib.suppress(OSError):
                source.unlink()
    with contextlib.suppress(OSError):
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return kept


def open_queue(
    path: Path | str, *, max_bytes: int = 8 * 1024**2, synchronous: str = "FULL"
) -> tuple[TelemetryQueue, QueueLoss | None]:
    """Open the device queue without ever failing the agent over its contents.

    A corrupt file is moved aside (``queue.corrupt.db``, replacing an older one) and a fresh queue is started;
    a file SQLite cannot open at all, and a fresh file that fails too, give a queue in memory for this run
    (telemetry still flows while the link is up). The ``QueueLoss`` says which, for a telemetry event.
    """
    path = Path(path)
    try:
        return TelemetryQueue(path, max_bytes=max_bytes, synchronous=synchronous), None
    except QueueCorruptError as exc:
        kept = _set_aside(path)
        log.error("event=telemetry_queue_corrupt path=%s kept=%s error=%s", path, kept, exc.message)
        try:
            fresh = TelemetryQueue(path, max_bytes=max_bytes, synchronous=synchronous)
        except (QueueCorruptError, QueueUnavailableError) as again:
            log.error("event=telemetry_queue_in_memory error=%s", again.message)
            memory = TelemetryQueue(":memory:", max_bytes=max_bytes, synchronous=synchronous)
            return memory, QueueLoss(exc.code, exc.message, kept, in_memory=True)
        return fresh, QueueLoss(exc.code, exc.message, kept, in_memory=False)
    except QueueUnavailableError as exc:
        log.error("event=telemetry_queue_in_memory path=%s error=%s", path, exc.message)
        memory = TelemetryQueue(":memory:", max_bytes=max_bytes, synchronous=synchronous)
        return memory, QueueLoss(exc.code, exc.message, None, in_memory=True)


def loss_event(loss: QueueLoss) -> tuple[str, str, dict[str, object]]:
    """Pure: the event that tells the fleet this device's queued telemetry was lost (kind ``health``)."""
    return (
        "health",
        "telemetry_lost",
        {
            "reason": loss.code,
            "message": loss.message,
            "kept": loss.kept_path.name if loss.kept_path is not None else None,
            "in_memory": loss.in_memory,
        },
    )
