"""The device's durable telemetry queue: one SQLite file in WAL mode, bounded in bytes.

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
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgefleet.protocol.canonical import canonical_json
from edgefleet.protocol.errors import EdgefleetError, InvalidDocumentError

__all__ = ["QueueCorruptError", "QueueStats", "QueuedRecord", "TelemetryQueue"]

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
_DROP_PREFIX = "dropped."


class QueueCorruptError(EdgefleetError):
    code = "telemetry_queue_corrupt"


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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.executescript(_SCHEMA)
            ok = self._db.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise QueueCorruptError(f"telemetry queue unreadable: {exc}", got=str(self.path)) from exc
        if ok != "ok":
            raise QueueCorruptError("telemetry queue failed its integrity check", got=str(ok)[:200])

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
            self._db.execute("BEGIN IMMEDIATE")
            try:
                seq = self._append_locked(boot_id, kind, label, priority, data, size)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return seq

    def _append_locked(
        self, boot_id: str, kind: str, label: str, priority: int, data: bytes, size: int
    ) -> int | None:
        total = self._counter(_BYTES)
        if size > self.max_bytes:
            self._bump(_DROP_PREFIX + label, 1)
            return None
        if total + size > self.max_bytes:
            need = total + size - self.max_bytes
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
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
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
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return deleted

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
