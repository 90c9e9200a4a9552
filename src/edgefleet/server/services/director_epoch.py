"""The director epoch: one counter that every change able to alter a desired state moves forward.

A desired state computed at the current epoch (and not yet half-expired) is answered again without being
recomputed: an unchanged epoch means nothing a device could be assigned has changed.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from edgefleet.server.store.devices import DirectorEpochRow

__all__ = ["EPOCH_BUMPED", "bump_director_epoch", "bump_director_epoch_alone", "current_epoch"]

EPOCH_BUMPED = "edgefleet.director_epoch_bumped"
"""Set in ``Session.info`` by a bump: the poll cache of this process listens for its commit."""


def bump_director_epoch(session: Session) -> None:
    """Call in the transaction of any change that can alter a desired state (pins, artifact status,
    rollout transitions)."""
    session.info[EPOCH_BUMPED] = True
    session.execute(
        update(DirectorEpochRow).where(DirectorEpochRow.id == 1).values(value=DirectorEpochRow.value + 1)
    )


def bump_director_epoch_alone(session: Session) -> None:
    """The same, in its own transaction: for a change made outside the database (a TUF targets publish
    changes which manifest targets the director can name)."""
    with session.begin():
        bump_director_epoch(session)


def current_epoch(session: Session) -> int:
    return int(session.execute(select(DirectorEpochRow.value).where(DirectorEpochRow.id == 1)).scalar_one())
