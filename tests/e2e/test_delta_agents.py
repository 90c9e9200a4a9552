"""Model deltas end to end: real ``agent run`` processes, a real server, the real ``edgefleet publish``.

One agent runs 1.0.0; 2.0.0 (only its head changed) is published with a delta from 1.0.0 (what the class's
devices run). That agent upgrades through the delta; a second agent that holds no base falls back to the full
download and says why. Both end serving 2.0.0, answered by the model itself.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import httpx
import pytest
from tests.agent.crash.artifacts import IN_DIM, backbone_head
from tests.e2e.fleet_cli import (
    EXAMPLES,
    active_artifact,
    agent_command,
    cli,
    create_rollout,
    enroll_agent,
    push_artifact,
    wait_for,
)

pytestmark = pytest.mark.slow


def _start(data_dir: Path) -> subprocess.Popen[str]:
    args = [
        "--poll-interval",
        "0.2",
        "--backoff-cap",
        "1",
        "--telemetry-window",
        "1",
        "--telemetry-interval",
        "0.5",
    ]
    return subprocess.Popen(
        agent_command(data_dir, *args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def _download_done(server, device_id: str, artifact: str) -> dict | None:
    with httpx.Client(base_url=server.url, headers=server.admin_headers) as http:
        events = http.get(f"/v1/devices/{device_id}/telemetry", params={"limit": 200}).json()["events"]
    for event in events:
        details = event.get("details") or {}
        done = event["code"] == "install_download_done" and details.get("artifact") == artifact
        if done and "full_bytes" in details:
            return details
    return None


def _serves(data_dir: Path, artifact: str) -> bool:
    endpoint = (data_dir / "serving-endpoint").read_text()
    with httpx.Client(base_url=endpoint, timeout=10) as http:
        r = http.post("/v1/predict", json={"inputs": {"x": [[0.1 * i for i in range(IN_DIM)]]}})
    return r.status_code == 200 and r.json()["artifact_id"] == artifact


def test_one_agent_upgrades_through_a_delta_another_falls_back_and_both_serve_it(live_server, tmp_path):
    server = live_server
    cli(server, "class", "apply", str(EXAMPLES))
    v1 = push_artifact(server, tmp_path, "1.0.0", model_bytes=backbone_head(0.0))
    cli(server, "device", "pin", v1, "--class", "medical-cart-cpu")
    holder_dir, newcomer_dir = tmp_path / "holder", tmp_path / "newcomer"
    holder = enroll_agent(server, holder_dir)
    newcomer = enroll_agent(server, newcomer_dir)  # not started yet: it will hold no base at all
    agents = [_start(holder_dir)]
    try:
        wait_for(lambda: active_artifact(server, holder) == v1, timeout_s=60, what="1.0.0 installed")
        v2 = push_artifact(server, tmp_path, "2.0.0", model_bytes=backbone_head(0.05), publish=False)
        art2 = tmp_path / "art-2.0.0-medical-cart-cpu"
        key = server.data_dir / "keys" / "release.key"
        published = cli(server, "publish", str(art2), "--release-key", str(key)).stdout
        assert "delta digits/2.0.0/medical-cart-cpu/deltas/" in published, published  # from what runs: 1.0.0
        assert "/model.onnx.efdelta" in published
        rollout = create_rollout(server, v2, "--stages", "100%", "--soak", "1s")
        agents.append(_start(newcomer_dir))
        for device in (holder, newcomer):
            wait_for(
                lambda d=device: active_artifact(server, d) == v2, timeout_s=90, what=f"{device} on 2.0.0"
            )
        assert _serves(holder_dir, v2)
        assert _serves(newcomer_dir, v2)
        through_delta = wait_for(
            lambda: _download_done(server, holder, v2), timeout_s=30, what="holder's report"
        )
        full = wait_for(lambda: _download_done(server, newcomer, v2), timeout_s=30, what="newcomer's report")
    finally:
        stderr = []
        for agent in agents:
            agent.send_signal(signal.SIGTERM)
            stderr.append(agent.communicate(timeout=30)[1])
    model_size = (art2 / "model.onnx").stat().st_size
    assert through_delta["delta_files"] >= 1
    assert through_delta["bytes_downloaded"] < 0.2 * through_delta["full_bytes"]
    assert "delta_fallbacks" not in through_delta
    assert full["delta_files"] == 0
    assert "model.onnx=delta_base_missing" in full["delta_fallbacks"].split(";")
    assert full["bytes_downloaded"] == full["full_bytes"] >= model_size
    assert "event=delta_fallback" in stderr[1]
    assert "Traceback" not in "".join(stderr)
    # the rollout view: the API's sums, and the CLI's line
    with httpx.Client(base_url=server.url, headers=server.admin_headers) as http:
        transfer = http.get(f"/v1/rollouts/{rollout}").json()["transfer"]
    assert transfer["installs"] == 2
    assert transfer["installs_through_delta"] == 1
    assert transfer["full_bytes"] == through_delta["full_bytes"] + full["full_bytes"]
    assert transfer["bytes_saved"] == through_delta["full_bytes"] - through_delta["bytes_downloaded"]
    assert transfer["delta_fallbacks"]["delta_base_missing"] >= 1
    shown = cli(server, "rollout", "status", rollout).stdout
    assert "downloads  2 installs (1 through deltas)" in shown
    assert "delta fallbacks delta_base_missing=" in shown
