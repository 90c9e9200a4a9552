"""``in_batches`` keeps fleet-sized ``IN`` lists under PostgreSQL's 65,535-parameter limit: one list of 70,000
ids is refused by the driver, the same ids in batches are all found (a rollout's engine tick failed exactly
so at 100,000 devices)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from edgefleet.server.store.in_lists import MAX_IN_LIST, in_batches

FLEET_IDS = 70_000


def test_batches_keep_order_and_bound_their_size() -> None:
    assert list(in_batches(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(in_batches([], 3)) == []
    assert [len(b) for b in in_batches(range(MAX_IN_LIST + 1))] == [MAX_IN_LIST, 1]
    with pytest.raises(ValueError, match="expected a batch size >= 1, got 0"):
        list(in_batches([1], 0))


def test_a_fleet_sized_in_list_fails_on_postgresql_and_batches_do_not(postgres_database: str) -> None:
    engine = sa.create_engine(postgres_database)
    meta = sa.MetaData()
    devices = sa.Table("devices_ids", meta, sa.Column("id", sa.String(32), primary_key=True))
    ids = [f"dev_{i:020x}" for i in range(FLEET_IDS)]
    try:
        meta.create_all(engine)
        with engine.begin() as conn:
            conn.execute(devices.insert(), [{"id": i} for i in ids])
        with engine.connect() as conn, pytest.raises(sa.exc.OperationalError, match="65535"):
            conn.execute(sa.select(devices.c.id).where(devices.c.id.in_(ids))).all()
        with engine.connect() as conn:
            found = [
                row.id
                for batch in in_batches(ids)
                for row in conn.execute(sa.select(devices.c.id).where(devices.c.id.in_(batch)))
            ]
        assert sorted(found) == ids
    finally:
        engine.dispose()
