"""A real control plane (in-process ASGI app) on each database, real enrolled devices, an injectable clock."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from edgefleet.agent.channel import DeviceChannel
from edgefleet.agent.datadir import DataDir
from edgefleet.agent.enroll import enroll
from edgefleet.agent.telemetry import ChannelUpload, TelemetryQueue, TelemetryRecorder, TelemetryUploader
from edgefleet.protocol import parse_classes_toml
from edgefleet.server.app import create_app
from edgefleet.server.settings import Settings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "hardware-classes.toml"


class Clock:
    """Server wall clock and device clocks in one: ``advance`` moves both; devices may add an offset."""

    def __init__(self) -> None:
        self.now = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
        self.mono = 1000.0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.mono += seconds


class Device:
    """One enrolled device with its own queue, recorder and uploader, talking to the in-process app."""

    def __init__(self, fleet: Fleet, identity: Any, ddir: DataDir, *, boot_id: str) -> None:
        self.fleet = fleet
        self.id = identity.device_id
        self.ddir = ddir
        self.wall_offset = timedelta(0)
        self.channel = DeviceChannel(
            "http://testserver",
            device_id=self.id,
            key=ddir.read_key(),
            transport=fleet.client._transport,
            clock=lambda: fleet.clock().timestamp(),
        )
        self.queue = TelemetryQueue(ddir.root / "telemetry" / "queue.db", max_bytes=1024**2)
        self.recorder = TelemetryRecorder(
            self.queue, boot_id=boot_id, window_s=60, clock=lambda: fleet.clock.mono, wall_clock=self.wall
        )
        self.transport = ChannelUpload(self.channel)
        self.uploader = self.make_uploader(self.transport)

    def wall(self) -> datetime:
        return self.fleet.clock() + self.wall_offset

    def make_uploader(self, transport: Any, **kw: Any) -> TelemetryUploader:
        kw.setdefault("bandwidth_bytes_per_s", 1e9)
        return TelemetryUploader(
            self.queue,
            transport,
            device_id=self.id,
            clock=lambda: self.fleet.clock.mono,
            wall_clock=self.wall,
            **kw,
        )

    def reboot(self, boot_id: str) -> None:
        self.recorder.flush()
        self.recorder = TelemetryRecorder(
            self.queue,
            boot_id=boot_id,
            window_s=60,
            clock=lambda: self.fleet.clock.mono,
            wall_clock=self.wall,
        )

    def drain(self, max_rounds: int = 100) -> int:
        """Upload until the queue is empty; returns the number of batches."""
        for rounds in range(1, max_rounds + 1):
            outcome = self.uploader.upload_once()
            assert outcome.error is None, outcome.error
            if outcome.backlog == 0:
                return rounds
        raise AssertionError("queue did not drain")

    def close(self) -> None:
        self.queue.close()
        self.channel.close()


class Fleet:
    def __init__(self, app: Any, client: TestClient, admin: dict[str, str], clock: Clock, tmp: Path) -> None:
        self.app, self.client, self.admin, self.clock, self.tmp = app, client, admin, clock, tmp
        self.devices: list[Device] = []

    def token(self, **body: Any) -> str:
        body.setdefault("hardware_class", "medical-cart-cpu")
        r = self.client.post("/v1/enrollment-tokens", json=body, headers=self.admin)
        assert r.status_code == 201, r.text
        return str(r.json()["token"])

    def device(self, *, boot_id: str = "boot1", **token_body: Any) -> Device:
        ddir = self.tmp / f"agent{len(self.devices) + 1}"
        identity = enroll(
            server_url="http://testserver",
            token=self.token(**token_body),
            data_dir=ddir,
            transport=self.client._transport,
        )
        device = Device(self, identity, DataDir(ddir), boot_id=boot_id)
        self.devices.append(device)
        return device

    def health(self, **params: Any) -> dict[str, Any]:
        r = self.client.get("/v1/fleet/health", params=params, headers=self.admin)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def device_telemetry(self, device_id: str, **params: Any) -> dict[str, Any]:
        r = self.client.get(f"/v1/devices/{device_id}/telemetry", params=params, headers=self.admin)
        assert r.status_code == 200, r.text
        return dict(r.json())


def gzip_json(doc: Any) -> bytes:
    return gzip.compress(json.dumps(doc).encode(), mtime=0)


@pytest.fixture
def fleet(tmp_path: Path, database_url: str) -> Iterator[Fleet]:
    clock = Clock()
    app = create_app(Settings(data_dir=tmp_path / "server", dev=True, database_url=database_url), clock=clock)
    with TestClient(app) as client:
        admin = {"authorization": f"Bearer {app.state.context.settings.admin_token}"}
        classes = [c.to_dict() for c in parse_classes_toml(EXAMPLES.read_text())]
        assert client.post("/v1/classes/apply", json={"classes": classes}, headers=admin).status_code == 200
        fleet = Fleet(app, client, admin, clock, tmp_path)
        yield fleet
        for device in fleet.devices:
            device.close()
