"""Migration 0007 (shadow statistics columns) on SQLite and PostgreSQL: rows stored before it read as empty
statistics, new rows keep theirs, and it downgrades cleanly."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from alembic import command
from sqlalchemy import inspect

from edgefleet.server.store import make_engine
from edgefleet.server.store.migrate import alembic_config, current_revision, head_revision

AT = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


def _migrate(engine: sa.Engine, revision: str, *, down: bool = False) -> None:
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, revision)


def _model_window(window_id: int, **extra: Any) -> dict[str, Any]:
    return {
        "window_id": window_id,
        "device_id": "dev1",
        "hardware_class": "medical-cart-cpu",
        "model_version": "digits/2.0.0",
        "site": "",
        "end_at": AT,
        "requests": 0,
        "errors": 0,
        "errors_by_code": {},
        "requests_by_rung": {},
        "latency_buckets": {},
        "latency_sum_ms": 0.0,
        "latency_max_ms": 0.0,
        "shadow_compared": 4,
        "shadow_agreement_sum": 3.0,
        "health_passed": 0,
        "health_failed": 0,
        "health_failed_by_code": {},
        **extra,
    }


def _tables(with_stats: bool) -> tuple[sa.Table, sa.Table, sa.Table]:
    meta = sa.MetaData()
    windows = sa.Table(
        "telemetry_windows",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        *(sa.Column(c, sa.String) for c in ("device_id", "hardware_class", "boot_id")),
        sa.Column("sequence", sa.BigInteger),
        *(
            sa.Column(c, sa.DateTime(timezone=True))
            for c in ("start_at", "end_at", "device_end_at", "received_at")
        ),
        sa.Column("late_s", sa.Float),
        sa.Column("degraded_s", sa.JSON),
    )
    extra = [sa.Column("shadow_stats", sa.JSON)] if with_stats else []
    counts = ("requests", "errors", "shadow_compared", "health_passed", "health_failed")
    floats = ("latency_sum_ms", "latency_max_ms", "shadow_agreement_sum")
    maps = ("errors_by_code", "requests_by_rung", "latency_buckets", "health_failed_by_code")
    models = sa.Table(
        "telemetry_model_windows",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("window_id", sa.Integer),
        *(sa.Column(c, sa.String) for c in ("device_id", "hardware_class", "model_version", "site")),
        sa.Column("end_at", sa.DateTime(timezone=True)),
        *(sa.Column(c, sa.BigInteger) for c in counts),
        *(sa.Column(c, sa.Float) for c in floats),
        *(sa.Column(c, sa.JSON) for c in maps),
        *extra,
    )
    rollups = sa.Table(
        "telemetry_rollups",
        meta,
        sa.Column("minute_at", sa.DateTime(timezone=True)),
        *(sa.Column(c, sa.String) for c in ("hardware_class", "model_version", "site")),
        *(sa.Column(c, sa.BigInteger) for c in counts),
        *(sa.Column(c, sa.Float) for c in (*floats, "max_late_s")),
        *(sa.Column(c, sa.JSON) for c in (*maps, "degraded_s")),
        *([sa.Column("shadow_stats", sa.JSON)] if with_stats else []),
    )
    return windows, models, rollups


def _insert_old_rows(conn: sa.Connection) -> None:
    windows, models, rollups = _tables(with_stats=False)
    conn.execute(
        windows.insert(),
        {
            "id": 1,
            "device_id": "dev1",
            "hardware_class": "medical-cart-cpu",
            "boot_id": "b1",
            "sequence": 1,
            "start_at": AT,
            "end_at": AT,
            "device_end_at": AT,
            "received_at": AT,
            "late_s": 0.0,
            "degraded_s": {},
        },
    )
    conn.execute(models.insert(), _model_window(1))
    row = {k: v for k, v in _model_window(1).items() if k not in ("window_id", "device_id", "end_at")}
    conn.execute(rollups.insert(), {**row, "minute_at": AT, "degraded_s": {}, "max_late_s": 0.0})


def test_rows_from_before_0007_read_as_empty_statistics_and_it_downgrades(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        _migrate(engine, "0006")
        with engine.begin() as conn:
            _insert_old_rows(conn)
        _migrate(engine, "head")
        assert current_revision(engine) == head_revision()
        _windows, models, rollups = _tables(with_stats=True)
        stats = {"rows": 3, "top1_rows": 3, "top1_matches": 2}
        with engine.begin() as conn:
            conn.execute(models.insert(), _model_window(1, shadow_stats=stats))
            old, new = (r.shadow_stats for r in conn.execute(sa.select(models).order_by(models.c.id)))
            [rolled] = conn.execute(sa.select(rollups.c.shadow_stats, rollups.c.shadow_compared)).all()
        assert (old, new) == ({}, stats)
        assert tuple(rolled) == ({}, 4)

        _migrate(engine, "0006", down=True)
        for table in ("telemetry_model_windows", "telemetry_rollups"):
            assert "shadow_stats" not in {c["name"] for c in inspect(engine).get_columns(table)}
        _migrate(engine, "head")
        assert "shadow_stats" in {c["name"] for c in inspect(engine).get_columns("telemetry_rollups")}
    finally:
        engine.dispose()
