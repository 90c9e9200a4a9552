"""The conditional poll answered from memory: each device's key and current generation, per process.

A device polling with ``If-None-Match: "<generation>"`` gets a 304 without touching the database when this
process holds an entry for it that is still valid:

- the entry was computed at the director epoch this process last read (``services.director_epoch``: every
  change that can alter a desired state, a revocation among them, moves it forward), and that read is no
  older than ``stale_after_s`` (the refresh loop reads it every ``refresh_s``; if it stops, entries stop
  being trusted);
- the signed document it names is not past half its lifetime (it would be re-issued);
- the device holds exactly that generation.

Everything else (a 200, a changed epoch, a cold cache) takes the database path, which fills the entry. So a
change made on any replica (a pin, a rollout step, a revocation) reaches every replica's answers within
``refresh_s`` plus one read, and on the replica that made it at once (``forget``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import event
from sqlalchemy.orm import Session

from edgefleet.server.services.director_epoch import EPOCH_BUMPED, current_epoch
from edgefleet.server.store import Database

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
        and entry.epoch == epoch
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

    def put(self, device_id: str, entry: CachedDevice) -> None:
        if device_id not in self._entries and len(self._entries) >= self.max_devices:
            self._entries.pop(next(iter(self._entries)))
        self._entries[device_id] = entry

    def forget(self, device_id: str | None = None) -> None:
        """Drop one device's entry (a revocation here), or every entry."""
        if device_id is None:
            self._entries.clear()
        else:
            self._entries.pop(device_id, None)

    def set_epoch(self, epoch: int) -> None:
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
        """Read the director epoch (one tiny query); entries of an older epoch stop answering."""
        with db.session() as session, session.begin():
            epoch = current_epoch(session)
        self.set_epoch(epoch)
        return epoch
