"""A real ``agent run`` process through its lifecycle: it reports its inventory (OS, CPU, runtimes) and the
fleet filters on it, an operator relabels it by selector and then decommissions it; the decommissioned agent
is refused on its next poll, keeps serving its current model from the same process (never bricks), and
disappears from the fleet listing while the audit keeps it."""

from __future__ import annotations

import json
import platform
import signal
import subprocess
import time

import httpx
import pytest
from tests.e2e.fleet_cli import EXAMPLES, agent_command, cli, enroll_agent, push_artifact, wait_for

pytestmark = pytest.mark.slow

X = [[0.1 * i for i in range(16)]]


def _api(server, path: str, **params: str) -> dict:
    """Read checks over HTTP (the CLI's own filters are covered in tests/cli; a subprocess each is slow)."""
    headers = {"authorization": f"Bearer {server.admin_token}"}
    r = httpx.get(f"{server.url}{path}", params=params, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _listed(server, **filters: str) -> list[str]:
    return [d["id"] for d in _api(server, "/v1/devices", **filters)["items"]]


def _device(server, device_id: str) -> dict:
    return _api(server, f"/v1/devices/{device_id}")


def test_a_decommissioned_agent_is_refused_and_keeps_serving(live_server, tmp_path):
    server = live_server
    cli(server, "class", "apply", str(EXAMPLES))
    art = push_artifact(server, tmp_path, "1.0.0")
    cli(server, "device", "pin", art, "--class", "medical-cart-cpu")
    data_dir = tmp_path / "agent"
    device_id = enroll_agent(server, data_dir, labels=("site=plant-3", "line=1"))
    agent = subprocess.Popen(
        agent_command(data_dir, "--poll-interval", "0.2", "--backoff-cap", "1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def answered_by_art(http: httpx.Client) -> bool:
        r = http.post("/v1/predict", json={"inputs": {"x": X}})
        return r.status_code == 200 and r.json()["artifact_id"] == art

    try:
        # Inventory: the real agent reports its host and, a few seconds after serving starts, its runtimes.
        inventory = wait_for(
            lambda: (
                (_device(server, device_id).get("inventory") or {}).get("runtimes")
                and _device(server, device_id)["inventory"]
            ),
            timeout_s=60,
            what="the agent's inventory with its runtimes",
        )
        assert inventory["arch"] == platform.machine()
        assert inventory["os"] == platform.system().lower()
        assert "onnxruntime" in inventory["runtimes"]
        assert "CPUExecutionProvider" in inventory["providers"]
        assert device_id in _listed(server, arch=platform.machine(), runtime="onnxruntime")
        assert device_id not in _listed(server, arch="no-such-arch")

        endpoint_file = data_dir / "serving-endpoint"
        endpoint = wait_for(lambda: endpoint_file.exists() and endpoint_file.read_text(), what="serving")
        with httpx.Client(base_url=endpoint, timeout=10) as http:
            wait_for(lambda: answered_by_art(http), what="the active model answering")

            relabel = ("device", "relabel", "--selector", "site=plant-3,line!=2", "--set", "line=2")
            relabelled = json.loads(cli(server, *relabel, "--yes", "--json").stdout)
            assert [c["id"] for c in relabelled["changed"]] == [device_id]
            assert _device(server, device_id)["labels"] == {"site": "plant-3", "line": "2"}

            cli(server, "device", "decommission", device_id, "--reason", "line closed", "--yes")
            time.sleep(3.0)  # several refused polls at --backoff-cap 1
            assert agent.poll() is None, "the decommissioned agent exited"
            assert endpoint_file.read_text() == endpoint  # the same serving process
            assert all(answered_by_art(http) for _ in range(5)), "it still serves its current model"
    finally:
        agent.send_signal(signal.SIGTERM)
        _, stderr = agent.communicate(timeout=20)
    assert agent.returncode == 0, stderr
    assert stderr.count("event=agent_started") == 1
    refused = [
        line for line in stderr.splitlines() if "event=poll_failed" in line and "device_revoked" in line
    ]
    assert len(refused) >= 2, stderr  # refused at its next poll, and it kept retrying with backoff
    assert "Traceback" not in stderr

    assert device_id not in _listed(server)
    assert device_id in _listed(server, include_decommissioned="true")
    shown = _device(server, device_id)
    assert shown["decommissioned_at"]
    assert shown["status"] == "revoked"
    rows = _api(server, "/v1/audit", target=device_id)["items"]
    assert [r["action"] for r in rows] == ["device.decommission", "device.relabel", "device.enroll"]
