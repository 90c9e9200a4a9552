"""An attack on the content path, end to end with a real agent process: the mirror swaps a signed release's
bytes. The device refuses the download (hash), installs nothing, keeps serving the version it had, reports
the failure, and its security event reaches the control plane."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
from tests.e2e.fleet_cli import EDGEFLEET, EXAMPLES, cli, enroll_agent, push_artifact, wait_for

pytestmark = pytest.mark.slow


def _slot(server, device_id: str) -> dict:
    shown = json.loads(cli(server, "device", "show", device_id, "--json").stdout)
    return ((shown.get("report") or {}).get("slots") or {}).get("default") or {}


def _predict(endpoint: str) -> dict | None:
    try:
        r = httpx.post(f"{endpoint}/v1/predict", json={"inputs": {"x": [[0.1] * 16]}}, timeout=5)
    except httpx.HTTPError:
        return None
    return r.json() if r.status_code == 200 else None


def test_a_swapped_release_on_the_mirror_is_refused_and_the_device_keeps_serving(live_server, tmp_path: Path):
    server = live_server
    cli(server, "class", "apply", str(EXAMPLES))
    v1 = push_artifact(server, tmp_path, "1.0.0")
    cli(server, "device", "pin", v1, "--class", "medical-cart-cpu")
    data_dir = tmp_path / "device"
    device_id = enroll_agent(server, data_dir)
    agent = subprocess.Popen(
        [*EDGEFLEET, "agent", "run", "--data-dir", str(data_dir), "--poll-interval", "0.2",
         "--backoff-cap", "1", "--telemetry-window", "1", "--telemetry-interval", "0.5"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: _slot(server, device_id).get("active") == v1, timeout_s=90, what="1.0.0 installed")
        endpoint = wait_for(
            lambda: (data_dir / "serving-endpoint").exists() and (data_dir / "serving-endpoint").read_text()
        ).strip()
        assert wait_for(lambda: _predict(endpoint), what="1.0.0 answering")["artifact_id"] == v1

        # 2.0.0 is signed and published; then the mirror's copy of its model is swapped (same length).
        v2 = push_artifact(server, tmp_path, "2.0.0")
        model = (tmp_path / "art-2.0.0-medical-cart-cpu" / "model.onnx").read_bytes()
        digest = hashlib.sha256(model).hexdigest()
        [served] = [p for p in (server.data_dir).rglob(f"{digest}.*") if "targets" in p.parts]
        served.chmod(0o644)
        served.write_bytes(bytes(b ^ 0x5A for b in model))
        cli(server, "device", "pin", v2, "--class", "medical-cart-cpu")

        wait_for(lambda: _slot(server, device_id).get("failed_artifact") == v2, timeout_s=60, what="refusal")
        slot = _slot(server, device_id)
        assert slot["active"] == v1
        assert slot["failure_code"] == "hash_mismatch", slot

        # The control plane shows the device behind its desired version, why, and that it keeps retrying.
        def lagging() -> dict | None:
            shown = json.loads(cli(server, "device", "show", device_id, "--json").stdout)
            return shown if [b["why"] for b in shown["behind"]] == ["failed:hash_mismatch"] else None

        shown = wait_for(lagging, timeout_s=30, what="the device shown behind")
        assert shown["behind"] == [
            {"slot": "default", "desired": v2, "active": v1, "why": "failed:hash_mismatch", "retrying": True}
        ]
        assert shown["report"]["status"] == "updating"
        text = cli(server, "device", "show", device_id).stdout
        assert f"desired={v2} why=" in text
        assert "(retrying)" in text
        # Nothing of 2.0.0 became current: the device still answers with 1.0.0, many times over.
        for _ in range(10):
            assert _predict(endpoint)["artifact_id"] == v1

        def security_events() -> list[dict]:
            shown = json.loads(cli(server, "device", "telemetry", device_id, "--json").stdout)
            return [e for e in shown["events"] if e["kind"] == "security"]

        events = wait_for(security_events, timeout_s=30, what="the security event at the control plane")
        assert "hash_mismatch" in {e["code"] for e in events}, events
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=30)
