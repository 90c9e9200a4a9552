"""The conditional poll answered from memory: each device's key and current generation, per process.

A device polling with ``If-None-Match: "<generation>"`` gets a 304 without touching the database when this
process holds an entry for it that is still valid:

- the entry was computed at the director epoch this process last read (``services.director_epoch``: every
  change that can alter a desired state, a revocation among them, moves it forward), or at an earlier one
  and no change since then named the device; and that read is no older than ``stale_after_s`` (the refresh
  loop reads it every ``refresh_s``; if it stops, entries stop being trusted);
- the signed document it names is not past half its lifetime (it would be re-issued);
- the device holds exactly that generation.

When the epoch moved, a refresh drops every entry if one of the changes may touch any device (the epoch's
``full_value`` moved), else only the entries of the devices the changes named (their ``director_mark``):
a rollout stage costs its members one database answer each, not the whole fleet. An entry is taken only when
it was computed at no older epoch than this process holds, so an answer computed before a change cannot
outlive it.

Everything else (a 200, a dropped entry, a cold cache) takes the database path, which fills the entry. So a
change made on any replica (a pin, a rollout step, a revocation) reaches every replica's answers within
``refresh_s`` plus one read, and on the replica that made it at once (``forget``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from edgefleet.server.services.director_epoch import EPOCH_BUMPED, current_epochs, stale_document_clause
from edgefleet.server.store import Database
from edgefleet.server.store.devices import DeviceRow
from edgefleet.trust.director import load_public_key_pem

__all__ = ["CachedDevice", "PollCache", "can_answer_304"]


@dataclass(frozen=True)
class CachedDevice:
    public_key: Ed25519PublicKey
    generation: int
    epoch: int
    reissue_at: datetime
    """When the signed document passes half its lifetime (from then on the database path re-issues it)."""


def can_answer_304(
    entry: CachedDevice | None,
    *,
    epoch: int | None,
    epoch_age_s: float,
    stale_after_s: float,
    held_generation: int | None,
    now: datetime,
) -> bool:
    """Pure: may this process answer 304 to a device holding ``held_generation`` from its cache alone?"""
    return (
        entry is not None
        and held_generation is not None
        and epoch is not None
        and epoch_age_s <= stale_after_s
        and entry.epoch <= epoch  # kept across later epochs only while no change named the device
        and entry.generation == held_generation
        and now < entry.reissue_at
    )


class PollCache:
    def __init__(
        self,
        *,
        refresh_s: float = 1.0,
        max_devices: int = 500_000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.refresh_s = refresh_s
        self.stale_after_s = 3 * refresh_s
        self.max_devices = max_devices
        self._monotonic = monotonic
        self._entries: dict[str, CachedDevice] = {}
        self.epoch: int | None = None
        self._epoch_read_s = float("-inf")
        self.hits = 0
        self.misses = 0
        self.dropped = 0
        """Entries dropped by refreshes because a change named their device (a full change clears all)."""
        self.warmed = False
        """Set once :meth:`warm` has read every current document."""
        self._lock = threading.Lock()  # a refresh's drop and a request's put never interleave

    def __len__(self) -> int:
        return len(self._entries)

    def entry(self, device_id: str) -> CachedDevice | None:
        return self._entries.get(device_id)

    def answers_304(self, device_id: str, held_generation: int | None, now: datetime) -> CachedDevice | None:
        """The entry if a 304 may be answered from it (the caller still verifies the signature)."""
        entry = self._entries.get(device_id)
        ok = can_answer_304(
            entry,
            epoch=self.epoch,
            epoch_age_s=self._monotonic() - self._epoch_read_s,
            stale_after_s=self.stale_after_s,
            held_generation=held_generation,
            now=now,
        )
        if ok:
            self.hits += 1
            return entry
        self.misses += 1
        return None

    def put(self, device_id: str, entry: CachedDevice) -> bool:
        """Keep ``entry`` unless it was computed before the epoch this process holds (a change it may
        predate was already applied here: the next poll takes the database path again). One computed at a
        newer epoch is kept and answers from the refresh that reaches its epoch, which drops it if a change
        up to then named its device. Answers whether kept."""
        with self._lock:
            if self.epoch is not None and entry.epoch < self.epoch:
                return False
            if device_id not in self._entries and len(self._entries) >= self.max_devices:
                self._entries.pop(next(iter(self._entries)))
            self._entries[device_id] = entry
            return True

    def forget(self, device_id: str | None = None) -> None:
        """Drop one device's entry (a revocation here), or every entry."""
        if device_id is None:
            self._entries.clear()
        else:
            self._entries.pop(device_id, None)

    def set_epoch(
        self,
        epoch: int,
        *,
        full_epoch: int | None = None,
        named: Iterable[str] = (),
        since: int | None = None,
    ) -> None:
        """Move to ``epoch``. Every entry goes unless the newest change that may touch any device
        (``full_epoch``; None: every change counts as one) is not past the epoch held and ``since`` is that
        epoch; then only the entries of ``named`` go (the devices the changes after ``since`` named). At the
        first read, the entries computed before ``epoch`` go."""
        with self._lock:
            held = self.epoch
            if held is None:  # the first read: keep what was computed at it or later (put before it)
                for device_id in [d for d, e in self._entries.items() if e.epoch < epoch]:
                    del self._entries[device_id]
            elif held != epoch:
                if since != held or full_epoch is None or full_epoch > held or epoch < held:
                    self._entries.clear()
                else:
                    for device_id in named:
                        if self._entries.pop(device_id, None) is not None:
                            self.dropped += 1
            self.epoch = epoch
            self._epoch_read_s = self._monotonic()

    def epoch_unknown(self) -> None:
        """Stop answering from the cache until the next epoch read (a change was committed here)."""
        self._epoch_read_s = float("-inf")

    def watch(self, db: Database) -> None:
        """Listen for this process's own epoch bumps: they stop the cache at once, not after a refresh."""

        def committed(session: Session) -> None:
            if session.info.pop(EPOCH_BUMPED, False):
                self.epoch_unknown()

        def rolled_back(session: Session) -> None:
            session.info.pop(EPOCH_BUMPED, None)

        event.listen(db.sessions, "after_commit", committed)
        event.listen(db.sessions, "after_rollback", rolled_back)

    def refresh(self, db: Database) -> int:
        """Read the director epoch (one tiny query); when it moved, drop what the changes since may touch
        (one more query, for the devices they named, when none of them may touch every device)."""
        since = self.epoch
        named: list[str] = []
        with db.session() as session, session.begin():
            epoch, full_epoch = current_epochs(session)
            if since is not None and full_epoch <= since < epoch:  # read after the epoch: holds every change
                named = list(
                    session.execute(select(DeviceRow.id).where(DeviceRow.director_mark > since)).scalars()
                )
        self.set_epoch(epoch, full_epoch=full_epoch, named=named, since=since)
        return epoch

    def warm(self, db: Database, *, ttl: timedelta, now: datetime, batch_rows: int = 2_000) -> int:
        """Fill the cache from the database at start: every enrolled device whose stored document is
        current and not past half its lifetime (what its first conditional poll would have read, one row at
        a time). Only on a cache that has read no epoch yet; answers the entries made."""
        if self.epoch is not None:
            return 0
        made = 0
        with db.session() as session, session.begin():
            epoch, full_epoch = current_epochs(session)
            self.set_epoch(epoch, full_epoch=full_epoch)  # the rows below are read after it: never older
            rows = session.execute(
                select(
                    DeviceRow.id,
                    DeviceRow.public_key_pem,
                    DeviceRow.desired_generation,
                    DeviceRow.desired_expires_at,
                )
                .where(
                    DeviceRow.revoked_at.is_(None),
                    DeviceRow.desired_generation > 0,
                    DeviceRow.desired_expires_at > now + ttl / 2,
                    ~stale_document_clause(full_epoch),
                )
                .limit(self.max_devices)
                .execution_options(yield_per=batch_rows)
            )
            for device_id, pem, generation, expires_at in rows:
                if expires_at is None:  # not read (the query asks for a time): typed as optional
                    continue
                entry = CachedDevice(load_public_key_pem(pem), generation, epoch, expires_at - ttl / 2)
                made += self.put(device_id, entry)
        self.warmed = True
        return made
