from __future__ import annotations

import stat
from pathlib import Path

import pytest

from edgefleet.server.errors import ConfigurationError
from edgefleet.server.settings import Settings

GOOD_TOKEN = "k3J9-x_2mQpL8vRt5YwZ0aBcDeFgHiJkLmNoPq"


def test_from_env_reads_prefixed_variables_and_overrides_win(tmp_path: Path) -> None:
    env = {
        "EDGEFLEET_DATA_DIR": str(tmp_path),
        "EDGEFLEET_PORT": "9001",
        "EDGEFLEET_DEV": "yes",
        "EDGEFLEET_MAX_BLOB_BYTES": "1024",
        "EDGEFLEET_ADMIN_TOKEN": GOOD_TOKEN,
    }
    s = Settings.from_env(env, port=9100, host=None)
    assert s.data_dir == tmp_path
    assert s.port == 9100  # override beats env
    assert s.host == "127.0.0.1"  # None override ignored
    assert s.dev is True
    assert s.max_blob_bytes == 1024
    assert s.resolved_database_url == f"sqlite:///{tmp_path / 'edgefleet.db'}"
    assert s.resolved_blob_dir == tmp_path / "blobs"


@pytest.mark.parametrize(("var", "value"), [("EDGEFLEET_PORT", "eighty"), ("EDGEFLEET_DEV", "maybe")])
def test_from_env_rejects_bad_values(var: str, value: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({var: value})
    assert info.value.code == "invalid_configuration"
    assert info.value.details["got"] == value


def test_unknown_override_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        Settings.from_env({}, colour="blue")


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"admin_token": None}, "admin token is required"),
        ({"admin_token": ""}, "admin token is required"),
        ({"admin_token": "short-token"}, "too short"),
        ({"admin_token": "a" * 40}, "weak"),
        ({"admin_token": "abcdefgh" * 4}, "8-character pattern repeated"),
        ({"admin_token": "Xy7#kQ2!mZ" * 4}, "10-character pattern repeated"),
        ({"admin_token": " " + GOOD_TOKEN}, "whitespace"),
        ({"admin_token": None, "host": "0.0.0.0"}, "admin token is required"),
        ({"admin_token": GOOD_TOKEN, "port": 0}, "port"),
        ({"admin_token": GOOD_TOKEN, "max_blob_bytes": 0}, "max_blob_bytes"),
        ({"admin_token": GOOD_TOKEN, "database_url": "mysql://x"}, "unsupported database_url"),
        ({"dev": True, "host": "0.0.0.0"}, "loopback"),
    ],
)
def test_validate_refuses_insecure_or_unusable_settings(fields: dict, needle: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings(**fields).validate()
    assert needle in info.value.message


def test_validate_accepts_production_settings_with_a_strong_token() -> None:
    s = Settings(admin_token=GOOD_TOKEN, host="0.0.0.0")
    assert s.validate() is s


def test_dev_mode_generates_a_private_admin_token_once(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, dev=True).with_dev_admin_token()
    token_file = tmp_path / "admin-token"
    assert s.admin_token
    assert len(s.admin_token) >= 32
    assert token_file.read_text().strip() == s.admin_token
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    again = Settings(data_dir=tmp_path, dev=True).with_dev_admin_token()
    assert again.admin_token == s.admin_token
    assert not list(tmp_path.glob(".*.tmp"))


def test_explicit_token_and_non_dev_do_not_touch_disk(tmp_path: Path) -> None:
    assert Settings(
        data_dir=tmp_path, dev=True, admin_token=GOOD_TOKEN
    ).with_dev_admin_token().admin_token == (GOOD_TOKEN)
    assert Settings(data_dir=tmp_path).with_dev_admin_token().admin_token is None
    assert not (tmp_path / "admin-token").exists()


def test_device_status_thresholds_come_from_settings(tmp_path: Path) -> None:
    from datetime import datetime, timedelta, timezone

    from edgefleet.server.api.devices import DeviceRuntime
    from edgefleet.server.services.devices import DeviceStatus, device_status

    s = Settings.from_env(
        {"EDGEFLEET_DEVICE_STALE_AFTER_S": "5", "EDGEFLEET_DEVICE_OFFLINE_AFTER_S": "30"},
        data_dir=tmp_path,
        dev=True,
    ).validate()
    thresholds = DeviceRuntime.from_settings(s).thresholds
    now = datetime(2026, 11, 29, tzinfo=timezone.utc)

    def status(silent_s: float) -> DeviceStatus:
        seen = now - timedelta(seconds=silent_s)
        return device_status(last_seen_at=seen, revoked=False, now=now, thresholds=thresholds)

    assert [status(4), status(6), status(31)] == [
        DeviceStatus.online,
        DeviceStatus.stale,
        DeviceStatus.offline,
    ]


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"device_stale_after_s": 0}, "device_stale_after_s must be positive"),
        ({"device_stale_after_s": 60, "device_offline_after_s": 30}, "shorter than"),
        ({"alert_device_silent_s": 0.0}, "alert_device_silent_s must be positive"),
        ({"alert_max_attempts": 0}, "alert_max_attempts must be positive"),
        ({"alert_dispatch_s": -1.0}, "alert_dispatch_s must be positive"),
        ({"rollout_max_busy_share": 0.0}, "rollout_max_busy_share must be a share of the time"),
        ({"rollout_max_busy_share": 1.5}, "rollout_max_busy_share must be a share of the time"),
    ],
)
def test_device_thresholds_are_validated(tmp_path: Path, fields: dict, needle: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings(data_dir=tmp_path, dev=True, **fields).validate()
    assert needle in info.value.message
