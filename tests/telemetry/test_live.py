"""A real server on loopback (uvicorn in a thread), a real device channel over HTTP, gzip on the wire."""

from __future__ import annotations

from pathlib import Path

import httpx

from edgefleet.agent.channel import DeviceChannel
from edgefleet.agent.datadir import DataDir
from edgefleet.agent.enroll import enroll
from edgefleet.agent.telemetry import ChannelUpload, TelemetryQueue, TelemetryRecorder, TelemetryUploader
from edgefleet.protocol import parse_classes_toml

from .conftest import EXAMPLES


def test_a_device_uploads_over_http_and_the_fleet_sees_it(live_server, tmp_path: Path) -> None:
    admin = live_server.admin_headers
    with httpx.Client(base_url=live_server.url, headers=admin, timeout=30) as http:
        classes = [c.to_dict() for c in parse_classes_toml(EXAMPLES.read_text())]
        assert http.post("/v1/classes/apply", json={"classes": classes}).status_code == 200
        token = http.post("/v1/enrollment-tokens", json={"hardware_class": "medical-cart-cpu"}).json()[
            "token"
        ]
        identity = enroll(server_url=live_server.url, token=token, data_dir=tmp_path / "dev")
        channel = DeviceChannel(
            live_server.url, device_id=identity.device_id, key=DataDir(tmp_path / "dev").read_key()
        )
        mono = [0.0]
        with TelemetryQueue(tmp_path / "dev" / "telemetry.db") as queue:
            recorder = TelemetryRecorder(queue, boot_id="live", clock=lambda: mono[0])
            for i in range(100):
                recorder.record_request("1.0.0", "cpu", 2.0 + i % 7, "timeout" if i % 25 == 0 else None)
            recorder.record_event("update", "activated", {"artifact": "a1"})
            recorder.flush()
            uploader = TelemetryUploader(queue, ChannelUpload(channel), device_id=identity.device_id)
            outcome = uploader.upload_once()
            assert outcome.error is None
            assert outcome.acked_records == 2
            assert queue.stats().records == 0
        channel.close()
        health = http.get("/v1/fleet/health").json()
        assert health["totals"]["requests"] == 100
        assert health["totals"]["errors_by_code"] == {"timeout": 4}
        device = http.get(f"/v1/devices/{identity.device_id}/telemetry").json()
        assert [e["code"] for e in device["events"]] == ["activated"]
        assert device["data"]["stale"] is False
        assert "edgefleet_fleet_request_rate" in http.get("/metrics").text
