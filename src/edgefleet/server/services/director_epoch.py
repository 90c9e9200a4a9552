"""The director epoch: one counter that every change able to alter a desired state moves forward.

A change either may touch any device (a class pin, an artifact disabled, a class or configuration edit, a
TUF publish: the epoch's ``full_value`` moves with it) or names the devices it can touch (a rollout stage, a
device pin, a revocation: each named device's ``director_mark`` is set to the new epoch). A device's stored
document, computed at ``desired_epoch``, is current while no change since then may touch it
(:func:`stored_document_current`): so a rollout stage re-judges its own members, not the whole fleet, and
the poll caches of every replica drop only those members' entries (``services.poll_cache``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from sqlalchemy import ColumnElement, Select, or_, select, update
from sqlalchemy.orm import Session

from edgefleet.server.store.devices import DeviceRow, DirectorEpochRow
from edgefleet.server.store.in_lists import in_batches

__all__ = [
    "EPOCH_BUMPED",
    "DeviceScope",
    "bump_director_epoch",
    "bump_director_epoch_alone",
    "current_epoch",
    "current_epochs",
    "stale_document_clause",
    "stored_document_current",
]

EPOCH_BUMPED = "edgefleet.director_epoch_bumped"
"""Set in ``Session.info`` by a bump: the poll cache of this process listens for its commit."""

DeviceScope = Iterable["Select[Any] | Collection[str]"]
"""The devices a change can touch: statements selecting device ids, or collections of ids."""


def bump_director_epoch(session: Session, *, devices: DeviceScope | None = None) -> int:
    """Call in the transaction of any change that can alter a desired state. ``devices``: the devices it
    can touch, when the change knows them (a rollout transition's members, one device's pin); ``None``:
    any device (the default, and always correct). Answers the new epoch."""
    session.info[EPOCH_BUMPED] = True
    values: dict[str, Any] = {"value": DirectorEpochRow.value + 1}
    if devices is None:
        values["full_value"] = DirectorEpochRow.value + 1
    session.execute(update(DirectorEpochRow).where(DirectorEpochRow.id == 1).values(**values))
    epoch = current_epoch(session)
    for scope in devices or ():
        if isinstance(scope, Select):
            _mark(session, DeviceRow.id.in_(scope), epoch)
        else:
            for ids in in_batches(scope):
                _mark(session, DeviceRow.id.in_(ids), epoch)
    return epoch


def _mark(session: Session, where: ColumnElement[bool], epoch: int) -> None:
    session.execute(
        update(DeviceRow)
        .where(where)
        .values(director_mark=epoch)
        .execution_options(synchronize_session=False)
    )


def bump_director_epoch_alone(session: Session) -> None:
    """The same, in its own transaction: for a change made outside the database (a TUF targets publish
    changes which manifest targets the director can name)."""
    with session.begin():
        bump_director_epoch(session)


def current_epoch(session: Session) -> int:
    return int(session.execute(select(DirectorEpochRow.value).where(DirectorEpochRow.id == 1)).scalar_one())


def current_epochs(session: Session) -> tuple[int, int]:
    """The epoch and the epoch of the newest change that may touch every device (``full_value``)."""
    row = session.execute(
        select(DirectorEpochRow.value, DirectorEpochRow.full_value).where(DirectorEpochRow.id == 1)
    ).one()
    return int(row[0]), int(row[1])


def stored_document_current(*, desired_epoch: int, director_mark: int, full_epoch: int) -> bool:
    """Pure: no change since the stored document was judged (at ``desired_epoch``) may touch the device.
    :func:`stale_document_clause` is the same rule in SQL."""
    return desired_epoch >= full_epoch and desired_epoch >= director_mark


def stale_document_clause(full_epoch: int) -> ColumnElement[bool]:
    """:func:`stored_document_current`, negated, as a ``WHERE`` clause on ``devices``."""
    return or_(DeviceRow.desired_epoch < full_epoch, DeviceRow.desired_epoch < DeviceRow.director_mark)
