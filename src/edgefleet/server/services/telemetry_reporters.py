"""Who reported when: the newest model window of each (device, model version, class, site).

Fleet health's device counts are exact distinct counts of the devices whose model windows end in the period.
Reading that from the windows is a DISTINCT over every window of the period (600,000 rows for 10,000 devices
reporting each minute for an hour); this table holds one row per (device, version, class, site) with the
newest ``end_at``, written at ingest in the same transaction as the rollups, so the same answer is an
indexed range over at most devices x versions rows. See docs/decisions.md, "Fleet health device counts".

Exactness: every stored window ends at or before the ingest's ``now`` (``end_at`` is clamped to it), so for
a period ``[since, now]`` ending at the current time a key reported in it exactly when its newest window
ends at or after ``since``. A late window (arriving hours after it ended) is stored with its own ``end_at``
and only moves ``last_end_at`` when it is the newest. A key whose newest window ends after ``now`` (a window
stored while the request ran, or a ``now`` in the past) is asked of the windows themselves.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from edgefleet.server.store.telemetry import TelemetryModelWindowRow, TelemetryReporterRow

__all__ = ["Reporter", "record_reporters", "reporters_in"]

Reporter = tuple[str, str, str, str]
"""(device_id, model_version, hardware_class, site)"""

_KEY = ("device_id", "model_version", "hardware_class", "site")


def record_reporters(session: Session, ends: dict[Reporter, datetime]) -> None:
    """Raise each key's ``last_end_at`` to the newest end in ``ends`` (one upsert; never lowers it)."""
    if not ends:
        return
    rows = [dict(zip(_KEY, key, strict=True), last_end_at=end) for key, end in ends.items()]
    dialect = session.get_bind().dialect.name
    stmt = (pg_insert if dialect == "postgresql" else sqlite_insert)(TelemetryReporterRow).values(rows)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=list(_KEY),
            set_={"last_end_at": stmt.excluded.last_end_at},
            where=TelemetryReporterRow.last_end_at < stmt.excluded.last_end_at,
        )
    )


def reporters_in(
    session: Session, since: datetime, now: datetime, hardware_class: str | None, model_version: str | None
) -> list[Reporter]:
    """The keys with a model window ending in ``[since, now]``: exactly the windows' DISTINCT."""
    r = TelemetryReporterRow
    stmt = select(r.device_id, r.model_version, r.hardware_class, r.site)
    if hardware_class is not None:
        stmt = stmt.where(r.hardware_class == hardware_class)
    if model_version is not None:
        stmt = stmt.where(r.model_version == model_version)
    # plain tuples, split in SQL (no per-row datetime to convert: a fleet is 100,000 rows here)
    out: list[Reporter] = [
        (a, b, c, d)
        for a, b, c, d in session.execute(stmt.where(r.last_end_at >= since, r.last_end_at <= now))
    ]
    later: list[Reporter] = [(a, b, c, d) for a, b, c, d in session.execute(stmt.where(r.last_end_at > now))]
    if later:  # the newest window is after ``now``: did an earlier one end in the period?
        out.extend(_windows_in(session, since, now, later))
    return out


def _windows_in(session: Session, since: datetime, now: datetime, keys: Iterable[Reporter]) -> list[Reporter]:
    w = TelemetryModelWindowRow
    found: list[Reporter] = []
    pending = list(keys)
    for start in range(0, len(pending), 500):
        chunk = pending[start : start + 500]
        rows: Any = session.execute(
            select(w.device_id, w.model_version, w.hardware_class, w.site)
            .where(
                w.end_at >= since,
                w.end_at <= now,
                w.device_id.in_({key[0] for key in chunk}),
                tuple_(w.device_id, w.model_version, w.hardware_class, w.site).in_(chunk),
            )
            .distinct()
        )
        found.extend(tuple(row) for row in rows)
    return found
