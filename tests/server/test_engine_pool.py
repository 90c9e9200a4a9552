"""The connection pool holds its connections open: concurrent device calls do not reconnect each time."""

from __future__ import annotations

from sqlalchemy import event, text

from edgefleet.server.store import make_engine
from edgefleet.server.store.engine import held_connections


def test_connections_beyond_the_setting_are_kept_not_reopened(database_url):
    engine = make_engine(database_url, pool_size=1)
    opened: list[object] = []
    event.listen(engine, "connect", lambda conn, _record: opened.append(conn))
    try:
        for _ in range(3):  # two calls at once, three times over: the second connection is kept too
            with engine.connect() as first, engine.connect() as second:
                assert first.execute(text("SELECT 1")).scalar() == second.execute(text("SELECT 1")).scalar()
        assert len(opened) == held_connections(1) == 2
    finally:
        engine.dispose()
