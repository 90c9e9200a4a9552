"""Model health over time on SQLite and PostgreSQL: the per-hour rollups written at ingest sum exactly
what the per-minute ones hold (histograms too), and migration 0011 fills them from the minute rows before."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from alembic import command
from sqlalchemy import inspect

from edgefleet.protocol.telemetry import LatencyHistogram
from edgefleet.server.store import make_engine
from edgefleet.server.store.migrate import alembic_config, current_revision, head_revision

from .conftest import Fleet

CLASS = "medical-cart-cpu"


def _history(fleet: Fleet, **params: str) -> dict:
    r = fleet.client.get("/v1/fleet/health/history", params=params, headers=fleet.admin)
    assert r.status_code == 200, r.text
    return r.json()


def test_hour_rollups_hold_the_exact_sums_of_the_minutes(fleet: Fleet) -> None:
    a = fleet.device(labels={"site": "ward-1"})
    b = fleet.device(labels={"site": "ward-2"})
    expected = LatencyHistogram()
    fleet.clock.advance(50 * 60)  # the windows straddle an hour boundary: two hour rows per version
    for minute in range(20):
        latencies = [1.0 + minute + i * 0.5 for i in range(30)]
        for device in (a, b):
            for i, latency in enumerate(latencies):
                device.recorder.record_request("1.0.0", "cpu", latency, "runtime_error" if i < 2 else None)
                expected.add(latency)
        fleet.clock.advance(60)
    for device in (a, b):
        device.recorder.tick()
        device.drain()
    now = fleet.clock()
    day = _history(fleet, hardware_class=CLASS, range="day")
    assert day["range"]["source"] == "hour"
    series = day["metrics"]["requests"]["series"]["1.0.0"]
    assert len([v for v in series if v]) == 2  # 12:50-13:00 and 13:00-13:10
    assert sum(v or 0 for v in series) == 2 * 20 * 30
    custom = _history(
        fleet,
        hardware_class=CLASS,
        range="custom",
        start=(now - timedelta(hours=1)).isoformat(),
        end=now.isoformat(),
    )
    assert custom["range"]["source"] == "minute"
    assert sum(v or 0 for v in custom["metrics"]["requests"]["series"]["1.0.0"]) == 1200
    rates = [v for v in day["metrics"]["error_rate"]["series"]["1.0.0"] if v is not None]
    assert rates
    assert all(abs(r - 2 / 30) < 1e-9 for r in rates)
    week = _history(fleet, hardware_class=CLASS, range="week", site="ward-2")
    assert sum(v or 0 for v in week["metrics"]["requests"]["series"]["1.0.0"]) == 600
    # a 30-day range is drawn in 4-hour buckets: the one holding every request has the merged p95, exactly
    month = _history(
        fleet,
        hardware_class=CLASS,
        range="custom",
        start=(now - timedelta(days=29)).isoformat(),
        end=now.isoformat(),
    )
    assert month["range"]["bucket_s"] == 4 * 3600
    p95 = [v for v in month["metrics"]["latency_p95_ms"]["series"]["1.0.0"] if v is not None]
    assert p95 == [expected.quantile_ms(0.95)]


AT = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


def _migrate(engine: sa.Engine, revision: str, *, down: bool = False) -> None:
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, revision)


def test_0011_fills_hour_rollups_from_the_minutes_and_downgrades(database_url: str) -> None:
    engine = make_engine(database_url)
    counts = ("requests", "errors", "input_faults", "shadow_compared", "health_passed", "health_failed")
    floats = ("latency_sum_ms", "latency_max_ms", "shadow_agreement_sum", "max_late_s")
    maps = (
        "errors_by_code",
        "requests_by_rung",
        "latency_buckets",
        "health_failed_by_code",
        "input_faults_by_code",
        "degraded_s",
        "shadow_stats",
    )
    meta = sa.MetaData()
    minutes = sa.Table(
        "telemetry_rollups",
        meta,
        sa.Column("minute_at", sa.DateTime(timezone=True)),
        *(sa.Column(c, sa.String) for c in ("hardware_class", "model_version", "site")),
        *(sa.Column(c, sa.BigInteger) for c in counts),
        *(sa.Column(c, sa.Float) for c in floats),
        *(sa.Column(c, sa.JSON) for c in maps),
    )
    try:
        _migrate(engine, "0010")
        row = {
            "hardware_class": "medical-cart-cpu",
            "model_version": "digits/2.0.0",
            "site": "",
            **dict.fromkeys(counts, 3),
            **dict.fromkeys(floats, 1.5),
            "errors_by_code": {"runtime_error": 3},
            "requests_by_rung": {"cpu": 3},
            "latency_buckets": {"7": 2, "9": 1},
            "health_failed_by_code": {},
            "input_faults_by_code": {"sensor": 3},
            "degraded_s": {},
            "shadow_stats": {"rows": 3},
        }
        with engine.begin() as conn:
            for minute in (0, 59):
                conn.execute(minutes.insert(), {**row, "minute_at": AT.replace(minute=minute)})
            conn.execute(minutes.insert(), {**row, "minute_at": AT.replace(hour=13)})
        _migrate(engine, "head")
        assert current_revision(engine) == head_revision()
        hours = sa.Table("telemetry_hour_rollups", sa.MetaData(), autoload_with=engine)
        with engine.begin() as conn:
            got = conn.execute(sa.select(hours).order_by(hours.c.hour_at)).mappings().all()
        assert [r["requests"] for r in got] == [6, 3]
        first = got[0]
        assert first["latency_buckets"] == {"7": 4, "9": 2}
        assert first["input_faults_by_code"] == {"sensor": 6}
        assert first["latency_max_ms"] == 1.5
        assert first["latency_sum_ms"] == 3.0
        assert first["shadow_stats"] == {}  # not carried by the backfill (documented)
        _migrate(engine, "0010", down=True)
        assert "telemetry_hour_rollups" not in inspect(engine).get_table_names()
    finally:
        engine.dispose()
