"""Fleet health's device counts come from ``telemetry_reporters`` (the newest window end per device, version,
class and site, kept at ingest): on SQLite and PostgreSQL they equal the old definition, a DISTINCT over the
model windows of the period, on a generated fleet with a version change mid-hour, late windows, a silent
device and two classes; and migration 0016 backfills the table from the windows already stored."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from alembic import command
from sqlalchemy import select

from edgefleet.server.services.telemetry_reporters import reporters_in
from edgefleet.server.store import make_engine
from edgefleet.server.store.migrate import alembic_config
from edgefleet.server.store.telemetry import TelemetryModelWindowRow

from .conftest import Device, Fleet

CLASS, OTHER = "medical-cart-cpu", "intel-lowpower-detector"


def _distinct(fleet: Fleet, since: datetime, now: datetime) -> set[tuple[str, str, str, str]]:
    """The old definition: distinct (device, version, class, site) of the model windows in the period."""
    w = TelemetryModelWindowRow
    with fleet.app.state.context.db.session() as session:
        rows = session.execute(
            select(w.device_id, w.model_version, w.hardware_class, w.site)
            .where(w.end_at >= since, w.end_at <= now)
            .distinct()
        )
        return {tuple(row) for row in rows}  # type: ignore[misc]


def _counts(keys: set[tuple[str, str, str, str]], index: int) -> dict[str, int]:
    devices: dict[str, set[str]] = {}
    for key in keys:
        if index != 3 or key[3]:  # devices without a site label are in no site group
            devices.setdefault(key[index], set()).add(key[0])
    return {name: len(ids) for name, ids in devices.items()}


def _generated_fleet(fleet: Fleet) -> list[Device]:
    """45 minutes: devices 0 and 1 move from 1.0.0 to 2.0.0 at minute 20, device 2 is offline from minute 10
    to 35 (its windows arrive late, then), device 3 falls silent at minute 15, device 4 serves both versions,
    device 5 (another class, no site label) reports throughout."""
    devices = [fleet.device(labels={"site": f"ward-{i % 3}"}) for i in range(5)]
    devices.append(fleet.device(hardware_class=OTHER))
    for minute in range(45):
        for i, d in enumerate(devices):
            if i == 3 and minute >= 15:
                continue
            version = "2.0.0" if i in (0, 1) and minute >= 20 else "1.0.0"
            d.recorder.record_request(version, "cpu", 1.0 + i, None)
            if i == 4:
                d.recorder.record_request("2.0.0", "cpu", 2.0, None)
        fleet.clock.advance(60)
        for i, d in enumerate(devices):
            d.recorder.tick()
            if not (i == 2 and 10 <= minute < 35):
                d.drain()
    return devices


def test_device_counts_equal_a_distinct_over_the_windows(fleet: Fleet) -> None:
    devices = _generated_fleet(fleet)
    now = fleet.clock()
    for minutes in (5, 12, 30, 60):
        since = now - timedelta(minutes=minutes)
        keys = _distinct(fleet, since, now)
        health = fleet.health(since=since.isoformat())
        assert {g["model_version"]: g["devices"] for g in health["by_model_version"]} == _counts(keys, 1)
        assert {g["hardware_class"]: g["devices"] for g in health["by_hardware_class"]} == _counts(keys, 2)
        assert {g["site"]: g["devices"] for g in health["by_site"]} == _counts(keys, 3)
        assert health["devices"]["reporting"] == len({k[0] for k in keys})
        for params, wanted in (
            ({"hardware_class": CLASS}, {k for k in keys if k[2] == CLASS}),
            ({"model_version": "2.0.0"}, {k for k in keys if k[1] == "2.0.0"}),
        ):
            part = fleet.health(since=since.isoformat(), **params)
            assert part["devices"]["reporting"] == len({k[0] for k in wanted}), (minutes, params)
    # the generated fleet has what the test is about: device 2's windows of minutes 10 to 35 arrived late
    # and count for those minutes, device 3 is silent for the last half hour, devices 0 and 1 changed version
    late = _distinct(fleet, now - timedelta(minutes=30), now - timedelta(minutes=12))
    assert devices[2].id in {k[0] for k in late}
    assert devices[3].id not in {k[0] for k in _distinct(fleet, now - timedelta(minutes=29), now)}
    assert {k[1] for k in _distinct(fleet, now - timedelta(minutes=60), now) if k[0] == devices[0].id} == {
        "1.0.0",
        "2.0.0",
    }


def test_periods_that_end_in_the_past_ask_the_windows(fleet: Fleet) -> None:
    """A ``now`` before a key's newest window (a window stored while the request ran, or a caller's past
    ``now``): still exactly the windows' DISTINCT, including keys whose newest window is later."""
    _generated_fleet(fleet)
    end = fleet.clock()
    with fleet.app.state.context.db.session() as session, session.begin():
        for back, span in ((0, 60), (10, 5), (20, 10), (30, 3), (44, 1)):
            now = end - timedelta(minutes=back)
            since = now - timedelta(minutes=span)
            got = reporters_in(session, since, now, None, None)
            assert len(got) == len(set(got))
            assert set(got) == _distinct(fleet, since, now), (back, span)
            for version in ("1.0.0", "2.0.0"):
                assert set(reporters_in(session, since, now, None, version)) == {
                    k for k in _distinct(fleet, since, now) if k[1] == version
                }


def _migrate(engine: sa.Engine, revision: str, *, down: bool = False) -> None:
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, revision)


def _model_window(window_id: int, device_id: str, version: str, end_at: datetime) -> dict[str, Any]:
    return {
        "window_id": window_id,
        "device_id": device_id,
        "hardware_class": CLASS,
        "model_version": version,
        "site": "ward-1",
        "end_at": end_at,
        "requests": 1,
        "errors": 0,
        "errors_by_code": {},
        "requests_by_rung": {},
        "latency_buckets": {},
        "latency_sum_ms": 0.0,
        "latency_max_ms": 0.0,
        "shadow_compared": 0,
        "shadow_agreement_sum": 0.0,
        "health_passed": 0,
        "health_failed": 0,
        "health_failed_by_code": {},
    }


def test_migration_0016_backfills_the_newest_end_of_each_key_and_downgrades(database_url: str) -> None:
    at = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
    engine = make_engine(database_url)
    try:
        _migrate(engine, "0015")
        meta = sa.MetaData()
        with engine.begin() as conn:
            windows = sa.Table("telemetry_windows", meta, autoload_with=conn)
            models = sa.Table("telemetry_model_windows", meta, autoload_with=conn)
            stored = [("dev1", "1.0.0", 0), ("dev1", "1.0.0", 5), ("dev1", "2.0.0", 3), ("dev2", "1.0.0", 1)]
            for i, (device_id, version, minute) in enumerate(stored, start=1):
                end_at = at + timedelta(minutes=minute)
                conn.execute(
                    windows.insert().values(
                        id=i,
                        device_id=device_id,
                        hardware_class=CLASS,
                        boot_id="b",
                        sequence=i,
                        start_at=end_at - timedelta(minutes=1),
                        end_at=end_at,
                        device_end_at=end_at,
                        received_at=end_at,
                        late_s=0.0,
                        degraded_s={},
                        resources=None,
                    )
                )
                conn.execute(models.insert().values(**_model_window(i, device_id, version, end_at)))
        _migrate(engine, "0016")
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT device_id, model_version, last_end_at FROM telemetry_reporters")
            )
            got = {
                (d, v): (e if isinstance(e, datetime) else datetime.fromisoformat(e)).replace(tzinfo=None)
                for d, v, e in rows
            }
        naive = at.replace(tzinfo=None)
        assert got == {
            ("dev1", "1.0.0"): naive + timedelta(minutes=5),
            ("dev1", "2.0.0"): naive + timedelta(minutes=3),
            ("dev2", "1.0.0"): naive + timedelta(minutes=1),
        }
        _migrate(engine, "0015", down=True)
        assert "telemetry_reporters" not in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()
