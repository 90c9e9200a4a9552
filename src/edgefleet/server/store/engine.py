"""Engine factory: SQLite in WAL mode with foreign keys and a busy timeout, or PostgreSQL via psycopg 3."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from edgefleet.durable import create_private_file

__all__ = ["Database", "held_connections", "make_engine", "normalize_url"]


def normalize_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` mean the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str, *, sqlite_busy_timeout_ms: int = 10_000, pool_size: int = 5) -> Engine:
    """At most ``2 * pool_size`` connections, each kept open once opened (``held_connections``)."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:" and not path.startswith("file:"):
            create_private_file(Path(path))  # 0600 in a 0700 dir when we create it; WAL/SHM follow its mode
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": sqlite_busy_timeout_ms / 1000},
            pool_size=held_connections(pool_size),
            max_overflow=0,
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={int(sqlite_busy_timeout_ms)}")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_engine(url, pool_size=held_connections(pool_size), max_overflow=0, pool_pre_ping=True)


def held_connections(pool_size: int) -> int:
    """Pure: the pool's connections for the ``db_pool_size`` setting: the setting plus as many again (what
    was once an overflow), all held open. An overflow connection was closed on its return whenever the base
    ones were idle, so 8-16 concurrent device calls reconnected to PostgreSQL all the time (a connection
    costs the server a connect and PostgreSQL a new backend process); the most connections at once is
    unchanged."""
    return 2 * pool_size


class Database:
    """An engine and its session factory; sessions keep loaded rows usable after commit."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions: sessionmaker[Session] = sessionmaker(engine, expire_on_commit=False)

    @property
    def kind(self) -> str:
        return "postgresql" if self.engine.dialect.name == "postgresql" else "sqlite"

    def session(self) -> Session:
        return self.sessions()

    @contextmanager
    def session_on_one_connection(self) -> Iterator[Session]:
        """A session whose successive transactions share one pooled connection: one checkout (and on
        PostgreSQL one liveness ping) per request rather than one per transaction."""
        with self.engine.connect() as connection, Session(bind=connection, expire_on_commit=False) as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
