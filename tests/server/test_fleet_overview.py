"""The fleet overview counted in the database gives the answer the same selection gives in memory, on SQLite
and PostgreSQL: every status boundary, revoked, decommissioned, never seen, degraded and error devices, and
lists cut to their size in their order."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from edgefleet.server.services.devices import DeviceFacts, StatusThresholds
from edgefleet.server.services.fleet_overview import overview_input_from_facts, read_fleet_overview
from edgefleet.server.store.devices import DeviceRow

THRESHOLDS = StatusThresholds(stale_after_s=120, offline_after_s=900)
UNSEEN_AFTER_S = 3600.0


def test_the_database_counts_and_lists_what_the_in_memory_selection_does(fleet):
    ids = [fleet.enroll()[0].device_id for _ in range(12)]
    now = fleet.clock()
    silent_s = [0, 120, 121, 900, 901, 3600, 3601, None, 30, 5000, None, 60]
    states = [
        {"report_status": "ok", "report_active": "default=art_1"},
        {"report_status": "degraded", "report_active": "default=art_1;extra=art_9"},
        {"report_status": "error", "report_active": "default=art_2", "report_error_code": "model_crashed"},
        {"report_status": None, "report_active": None},
    ]
    db = fleet.app.state.context.db
    with db.session() as session, session.begin():
        for n, device_id in enumerate(ids):
            values = {
                **states[n % len(states)],
                "last_seen_at": None if silent_s[n] is None else now - timedelta(seconds=silent_s[n]),
            }
            if n == 8:
                values["revoked_at"] = now  # counted as revoked, never listed
            if n == 11:
                values |= {"revoked_at": now, "decommissioned_at": now}  # not part of the fleet
            session.execute(update(DeviceRow).where(DeviceRow.id == device_id).values(**values))
    with db.session() as session, session.begin():
        facts = [
            DeviceFacts(r.id, r.hardware_class, r.last_seen_at, r.revoked_at is not None, r.report_status,
                        r.report_active, r.report_error_code)
            for r in session.execute(select(DeviceRow).where(DeviceRow.decommissioned_at.is_(None))).scalars()
        ]  # fmt: skip
    for max_listed in (50, 2):
        expected = overview_input_from_facts(
            facts, now=now, thresholds=THRESHOLDS, unseen_after_s=UNSEEN_AFTER_S, max_listed=max_listed
        )
        with db.session() as session:
            got = read_fleet_overview(
                session, now=now, thresholds=THRESHOLDS, unseen_after_s=UNSEEN_AFTER_S, max_listed=max_listed
            )
        assert sorted(got.groups, key=repr) == sorted(expected.groups, key=repr)
        assert got.degraded == expected.degraded
        assert got.unseen == expected.unseen
        assert (got.degraded_count, got.unseen_count) == (expected.degraded_count, expected.unseen_count)
    statuses = {g.status for g in got.groups}
    assert statuses == {"online", "stale", "offline", "revoked"}  # every boundary was exercised
    assert sum(g.devices for g in got.groups) == 11
    assert (got.degraded_count, got.unseen_count) == (6, 4)
