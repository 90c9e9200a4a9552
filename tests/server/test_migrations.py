from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

import edgefleet.server.store as store
from edgefleet.server.store import Base, make_engine
from edgefleet.server.store.migrate import current_revision, head_revision, upgrade_to_head

REGISTRY_TABLES = {
    "hardware_classes",
    "models",
    "model_versions",
    "artifacts",
    "operator_tokens",
    "audit_log",
}


def _import_every_table_module() -> None:
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(store.__path__):
        if info.name not in {"migrations"}:
            importlib.import_module(f"{store.__name__}.{info.name}")


def test_empty_database_upgrades_to_head_and_matches_the_models(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        assert current_revision(engine) is None
        assert not set(inspect(engine).get_table_names()) & REGISTRY_TABLES
        upgrade_to_head(engine)
        assert current_revision(engine) == head_revision()
        tables = set(inspect(engine).get_table_names())
        assert tables >= REGISTRY_TABLES | {"alembic_version"}
        upgrade_to_head(engine)  # idempotent on restart
        assert current_revision(engine) == head_revision()
        _import_every_table_module()
        with engine.connect() as conn:
            diff = compare_metadata(
                MigrationContext.configure(conn, opts={"compare_type": False}), Base.metadata
            )
        assert diff == [], f"models and migrations disagree: {diff}"
    finally:
        engine.dispose()


def test_sqlite_engine_pragmas(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}", sqlite_busy_timeout_ms=1234)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 1234
    finally:
        engine.dispose()
