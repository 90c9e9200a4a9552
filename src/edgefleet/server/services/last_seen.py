"""When each device was last seen, kept in memory and written back in batches.

Every signed device request notes the device here instead of updating its row. A device's ``last_seen_at`` is
written only when it moved forward by at least ``resolution_s`` from what this process last wrote or read,
and the writes go out every ``flush_s`` as one batched statement. So the database holds, for every device, a
time no more than ``resolution_s + flush_s`` older than its newest request to any replica (each replica
flushes its own devices; a write never moves a time backwards), and a fleet polling every ``P`` seconds costs
about ``P / max(P, resolution_s)`` row writes per poll instead of one.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, or_, update

from edgefleet.server.store import Database
from edgefleet.server.store.devices import DeviceRow

__all__ = ["LastSeenBuffer", "due"]


def due(*, known: datetime | None, now: datetime, resolution_s: float) -> bool:
    """Pure: must ``now`` be written, given the last time this process knows is stored?"""
    return known is None or (now - known) >= timedelta(seconds=resolution_s)


@dataclass
class LastSeenBuffer:
    resolution_s: float = 30.0
    flush_s: float = 5.0
    max_known: int = 500_000
    """Bound on the per-device memory (the oldest entries are forgotten first: they are written again)."""
    _pending: dict[str, datetime] = field(default_factory=dict)
    _known: dict[str, datetime] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    rows_written: int = 0
    """Rows this process has written since it started (the benchmark divides it by polls)."""

    def learn(self, device_id: str, stored: datetime | None) -> None:
        """What the database holds for the device (read with its row): no write until ``resolution_s``."""
        if stored is None:
            return
        with self._lock:
            known = self._known.get(device_id)
            if known is None or stored > known:
                self._remember(device_id, stored)

    def note(self, device_id: str, now: datetime) -> None:
        """The device made an authenticated request at ``now``."""
        with self._lock:
            if not due(known=self._known.get(device_id), now=now, resolution_s=self.resolution_s):
                return
            pending = self._pending.get(device_id)
            if pending is None or now > pending:
                self._pending[device_id] = now
            self._remember(device_id, now)

    def _remember(self, device_id: str, at: datetime) -> None:
        if device_id not in self._known and len(self._known) >= self.max_known:
            self._known.pop(next(iter(self._known)))
        self._known[device_id] = at

    def pending(self) -> int:
        return len(self._pending)

    def flush(self, db: Database) -> int:
        """Write what is pending in one transaction; returns the rows written. On failure the times are
        kept for the next flush."""
        with self._lock:
            batch, self._pending = self._pending, {}
        if not batch:
            return 0
        params: list[dict[str, Any]] = [{"device": k, "seen": v} for k, v in batch.items()]
        table = cast("Table", DeviceRow.__table__)
        stmt = (
            update(table)
            .where(table.c.id == bindparam("device"))
            .where(or_(table.c.last_seen_at.is_(None), table.c.last_seen_at < bindparam("seen")))
            .values(last_seen_at=bindparam("seen"))
        )
        try:
            with db.engine.begin() as conn:
                conn.execute(stmt, params)
        except Exception:
            with self._lock:
                for device_id, seen in batch.items():
                    newer = self._pending.get(device_id)
                    if newer is None or seen > newer:
                        self._pending[device_id] = seen
            raise
        self.rows_written += len(batch)
        return len(batch)
