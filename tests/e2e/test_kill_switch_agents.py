"""The kill switch with real agent processes: disabling an artifact moves the device that has a previous
version back to it, and the device that has none down its degraded ladder (to the rule: the class has no
fallback pinned here), reported as ``serving: {mode: rule, reason: artifact_disabled}`` and counted on the
artifact; re-enabling it brings both back."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import pytest
from tests.e2e.fleet_cli import EXAMPLES, cli, enroll_agent, push_artifact, run_agent, wait_for

pytestmark = pytest.mark.slow

X = [[0.1] * 16]
AGENT_ARGS = ("--poll-interval", "0.3", "--trial-window", "1")


def _report(server, device_id: str) -> dict:
    """The device's newest report, read over HTTP (polled often: no CLI process per look)."""
    r = httpx.get(f"{server.url}/v1/devices/{device_id}", headers=server.admin_headers, timeout=10)
    assert r.status_code == 200, r.text
    return r.json().get("report") or {}


def _slot(server, device_id: str) -> dict:
    return (_report(server, device_id).get("slots") or {}).get("default") or {}


def _predict(data_dir: Path) -> httpx.Response:
    endpoint = (data_dir / "serving-endpoint").read_text()
    with httpx.Client(base_url=endpoint, timeout=10) as http:
        return http.post("/v1/predict", json={"inputs": {"x": X}})


def test_disable_rolls_one_device_back_and_sends_the_other_down_the_ladder(live_server, tmp_path: Path):
    server = live_server
    cli(server, "class", "apply", str(EXAMPLES))
    v1 = push_artifact(server, tmp_path, "1.0.0")
    v2 = push_artifact(server, tmp_path, "2.0.0")
    cli(server, "device", "pin", v1, "--class", "medical-cart-cpu")
    agents = []
    try:
        dir_a, dir_b = tmp_path / "agent-a", tmp_path / "agent-b"
        device_a = enroll_agent(server, dir_a)
        agents.append(run_agent(dir_a, *AGENT_ARGS))
        committed = {"active": v1, "state": "committed"}
        wait_for(
            lambda: _slot(server, device_a).items() >= committed.items(), timeout_s=90, what="A on 1.0.0"
        )
        cli(server, "device", "pin", v2, "--class", "medical-cart-cpu")
        committed = {"active": v2, "previous": v1, "state": "committed"}
        wait_for(
            lambda: _slot(server, device_a).items() >= committed.items(), timeout_s=90, what="A on 2.0.0"
        )
        device_b = enroll_agent(server, dir_b)  # joins while 2.0.0 is pinned: it never had another
        agents.append(run_agent(dir_b, *AGENT_ARGS))
        wait_for(lambda: _slot(server, device_b).get("active") == v2, timeout_s=90, what="B on 2.0.0")
        assert _slot(server, device_a)["previous"] == v1
        assert _slot(server, device_b)["previous"] is None
        assert _predict(dir_b).json()["artifact_id"] == v2

        cli(server, "artifact", "disable", v2, "--reason", "bad batch")
        wait_for(lambda: _slot(server, device_a).get("active") == v1, timeout_s=60, what="A back on 1.0.0")
        assert _slot(server, device_a)["state"] == "rolled_back:artifact_disabled"
        wait_for(
            lambda: (_report(server, device_b).get("serving") or {}).get("reason") == "artifact_disabled",
            timeout_s=60,
            what="B reporting its withdrawal",
        )
        b = _report(server, device_b)
        assert b["serving"]["mode"] == "rule"
        assert b["status"] == "degraded"
        assert (b["slots"]["default"]["active"], b["slots"]["default"]["state"]) == (
            None,
            "withdrawn:artifact_disabled",
        )
        refused = _predict(dir_b)  # the rule rung (defer): no answer from the disabled model
        assert refused.status_code == 503
        assert refused.json()["code"] == "inference_deferred"
        assert refused.headers["X-Edgefleet-Serving-Mode"] == "rule"
        assert _predict(dir_a).json()["artifact_id"] == v1
        shown = json.loads(cli(server, "artifact", "show", v2, "--json").stdout)
        assert shown["kill_switch"]["withdrawn"] == 1
        assert shown["kill_switch"]["withdrawn_modes"] == {"rule": 1}
        assert shown["kill_switch"]["degrades"] == 0  # nobody serves it any more

        cli(server, "artifact", "enable", v2)
        for device in (device_a, device_b):
            wait_for(
                lambda d=device: _slot(server, d).get("active") == v2, timeout_s=90, what="back on 2.0.0"
            )
        wait_for(
            lambda: (_report(server, device_b).get("serving") or {}).get("mode") == "preferred",
            timeout_s=60,
            what="B serving its model again",
        )
        assert _predict(dir_b).json()["artifact_id"] == v2
    finally:
        for agent in agents:
            agent.send_signal(signal.SIGTERM)
        for agent in agents:
            agent.communicate(timeout=30)
