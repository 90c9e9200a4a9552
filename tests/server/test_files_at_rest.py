"""Files at rest (issue 14, item 8): what the server and the agent create is owner-only, and a production
server says so when offline keys sit on it."""

from __future__ import annotations

import logging
import secrets
import stat
from datetime import datetime, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgefleet.agent.datadir import DataDir, DeviceIdentity
from edgefleet.agent.telemetry.queue import TelemetryQueue
from edgefleet.server import Settings, create_app
from edgefleet.server.settings import token_weakness
from edgefleet.server.tuf_runtime import TufRuntime, offline_keys_in
from edgefleet.trust.director import public_key_pem
from edgefleet.trust.keys import init_keys


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_server_database_and_its_wal_and_shm_are_owner_only(tmp_path) -> None:
    data = tmp_path / "fresh" / "data"
    app = create_app(Settings(data_dir=data, dev=True, admin_token=secrets.token_urlsafe(32)))
    try:
        with app.state.context.db.session() as session, session.begin():
            from edgefleet.server.services.audit import record

            record(session, actor="t", action="t.write", target="x", now=datetime.now(timezone.utc))
        files = {p.name: _mode(p) for p in data.iterdir() if p.name.startswith("edgefleet.db")}
        assert {"edgefleet.db", "edgefleet.db-wal", "edgefleet.db-shm"} <= set(files), files
        assert set(files.values()) == {0o600}, files
        assert _mode(data) == 0o700
    finally:
        app.state.context.db.dispose()


def test_the_agent_queue_and_its_wal_and_shm_are_owner_only(tmp_path) -> None:
    path = tmp_path / "agent" / "telemetry" / "queue.db"
    queue = TelemetryQueue(path)
    try:
        queue.append(boot_id="b", kind="window", label="w", priority=1, body={"n": 1})
        files = {p.name: _mode(p) for p in path.parent.iterdir() if p.name.startswith("queue.db")}
        files.pop("queue.db.reserve", None)  # zeroed disk reserve, no telemetry in it
        assert {"queue.db", "queue.db-wal", "queue.db-shm"} <= set(files), files
        assert all(mode == 0o600 for mode in files.values()), files
        assert _mode(path.parent) == 0o700
    finally:
        queue.close()


def test_the_agent_data_dir_identity_and_state_are_owner_only(tmp_path) -> None:
    ddir = DataDir(tmp_path / "device")
    key = Ed25519PrivateKey.generate()
    ddir.write_key(key)
    ddir.write_identity(
        DeviceIdentity(
            device_id="dev_0123456789abcdef0123",
            server_url="http://127.0.0.1:1",
            hardware_class="medical-cart-cpu",
            director_public_key_pem=public_key_pem(key.public_key()),
        ),
        tuf_root=None,
    )
    ddir.raise_time_floor(datetime.now(timezone.utc))
    for folder in (ddir.root, ddir.root / "identity", ddir.root / "state"):
        assert _mode(folder) == 0o700, folder
    for path in (ddir.key_path, ddir.identity_path, ddir.time_floor_path):
        assert _mode(path) == 0o600, path


def test_a_production_server_warns_about_offline_keys_in_its_keys_dir(tmp_path, caplog) -> None:
    now = datetime.now(timezone.utc)
    keys = tmp_path / "data" / "keys"
    init_keys(keys, now=now, root_threshold=2, root_keys=3)
    assert offline_keys_in(keys) == ["release.key", "root-1.key", "root-2.key", "root-3.key"]
    settings = Settings(data_dir=tmp_path / "data", admin_token=secrets.token_urlsafe(32))
    with caplog.at_level(logging.WARNING, logger="edgefleet.server.tuf"):
        TufRuntime.from_settings(settings, now=now)
    warned = [r.getMessage() for r in caplog.records if "offline_keys_on_server" in r.getMessage()]
    assert len(warned) == 1
    assert "root-1.key" in warned[0]
    assert "release.key" in warned[0]
    caplog.clear()
    for name in offline_keys_in(keys):
        (keys / name).unlink()
    with caplog.at_level(logging.WARNING, logger="edgefleet.server.tuf"):
        TufRuntime.from_settings(settings, now=now)
    assert not [r for r in caplog.records if "offline_keys_on_server" in r.getMessage()]


def test_a_dev_server_does_not_warn_about_its_demo_keys(tmp_path, caplog) -> None:
    settings = Settings(data_dir=tmp_path / "data", dev=True, admin_token=secrets.token_urlsafe(32))
    with caplog.at_level(logging.WARNING, logger="edgefleet.server.tuf"):
        TufRuntime.from_settings(settings, now=datetime.now(timezone.utc))
        TufRuntime.from_settings(settings, now=datetime.now(timezone.utc))
    assert offline_keys_in(tmp_path / "data" / "keys")
    assert not [r for r in caplog.records if "offline_keys_on_server" in r.getMessage()]


@pytest.mark.parametrize(
    ("token", "weak"),
    [
        ("abcdefgh" * 4, True),
        ("0123456789abcdef" * 2, True),
        ("abcdefghijk" * 3 + "abc", True),
        (secrets.token_urlsafe(32), False),
        ("abcdefghijklmnopqrstuvwxyz012345", False),
    ],
)
def test_a_short_repeated_pattern_is_a_weak_token(token, weak) -> None:
    assert (token_weakness(token) is not None) is weak
