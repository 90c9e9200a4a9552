"""Wake-up hints: which devices' desired state changed, and when each may be hinted again.

Every change that can alter a desired state (a pin, an assignment, a rollout stage, a rollback, a disabled
artifact, a TUF publish) moves the director epoch forward in its own transaction (``director_epoch``). The
hint sender watches that one counter; when it moved, :func:`changed_devices` asks the director's own rule
(``desired_content`` and ``content_digest``, the function that decides a new generation) which devices would
now be answered something else than the document they hold, and only those are hinted. A device that polled
since the change, or that no change since its document names (``director_epoch.stored_document_current``),
needs no hint.

:class:`HintCoalescer` is pure (it takes ``now_s``): a flood of changes becomes at most one hint per device
per ``min_interval_s``; what is not due yet stays pending for the next round. :func:`known_devices` drops
hints for devices that do not exist (any more) or are revoked before anything is published.

A hint carries no authority: the device still polls and verifies the signed desired state. A lost hint
costs a poll interval; a forged or repeated one costs a conditional poll (``docs/security.md``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from edgefleet.server.services.desired_state import SignedTargetLookup, desired_content
from edgefleet.server.services.director_epoch import current_epochs, stale_document_clause
from edgefleet.server.services.director_view import DirectorViews
from edgefleet.server.store.devices import DeviceRow

__all__ = ["HintCoalescer", "changed_devices", "hint_spread_s", "known_devices"]

SWEEP_BATCH_ROWS = 500
MAX_HINT_SPREAD_S = 300.0


def changed_devices(
    session: Session, *, signed_target: SignedTargetLookup, batch_rows: int = SWEEP_BATCH_ROWS
) -> tuple[int, list[str]]:
    """The current epoch, and the devices whose desired state at that epoch differs from the one they
    were last given (not revoked, polled at least once, not yet answered at this epoch). Read only."""
    with session.begin():
        epoch, full_epoch = current_epochs(session)
        rows: Iterator[DeviceRow] = iter(
            session.execute(
                select(DeviceRow)
                .where(
                    DeviceRow.revoked_at.is_(None),
                    DeviceRow.desired_generation > 0,
                    stale_document_clause(full_epoch),  # a change since its document may touch it
                )
                .order_by(DeviceRow.id)
                .execution_options(yield_per=batch_rows)
            ).scalars()
        )
        changed = []
        views = DirectorViews()  # the class-wide rows once per class, not once per device
        for device in rows:
            choice = desired_content(session, device, views.get(session, device.hardware_class, epoch))
            if choice.digest(choice.assignments(signed_target)) != device.desired_digest:
                changed.append(device.id)
    return epoch, changed


def known_devices(session: Session, device_ids: Iterable[str]) -> set[str]:
    """Those of ``device_ids`` that are enrolled and not revoked: hints for any other are dropped."""
    wanted = sorted(set(device_ids))
    found: set[str] = set()
    with session.begin():
        for start in range(0, len(wanted), SWEEP_BATCH_ROWS):
            chunk = wanted[start : start + SWEEP_BATCH_ROWS]
            found.update(
                session.execute(
                    select(DeviceRow.id).where(DeviceRow.id.in_(chunk), DeviceRow.revoked_at.is_(None))
                ).scalars()
            )
    return found


def hint_spread_s(count: int, polls_per_s: float) -> float:
    """Pure: the window over which ``count`` hinted devices should spread their polls so the control plane
    sees about ``polls_per_s`` of them; each device picks its moment at random inside it."""
    if count <= 1 or polls_per_s <= 0:
        return 0.0
    return min(MAX_HINT_SPREAD_S, count / polls_per_s)


@dataclass
class HintCoalescer:
    """Pending hints, at most one per device per ``min_interval_s`` (pure: every call takes ``now_s``)."""

    min_interval_s: float
    max_tracked: int = 1_000_000
    """A bound on the devices remembered; past it the oldest entries are forgotten (a hint may repeat)."""
    _pending: set[str] = field(default_factory=set)
    _last_sent_s: dict[str, float] = field(default_factory=dict)

    def offer(self, device_ids: Iterable[str]) -> None:
        self._pending.update(device_ids)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def due(self, now_s: float) -> list[str]:
        """The pending devices that may be hinted now (each is then marked sent at ``now_s``); the others
        stay pending. A device offered many times while pending is hinted once."""
        ready = sorted(
            d for d in self._pending if now_s - self._last_sent_s.get(d, float("-inf")) >= self.min_interval_s
        )
        for device_id in ready:
            self._pending.discard(device_id)
            self._last_sent_s.pop(device_id, None)
            self._last_sent_s[device_id] = now_s  # re-inserted: the dict stays ordered oldest first
        self._forget(now_s)
        return ready

    def _forget(self, now_s: float) -> None:
        """Drop entries past ``min_interval_s`` (they no longer hold anything back), and any beyond the
        bound, oldest first."""
        stale = []
        for device_id, at in self._last_sent_s.items():  # oldest first: stop at the first still fresh
            if now_s - at < self.min_interval_s:
                break
            stale.append(device_id)
        for device_id in stale:
            del self._last_sent_s[device_id]
        while len(self._last_sent_s) > self.max_tracked:
            del self._last_sent_s[next(iter(self._last_sent_s))]
