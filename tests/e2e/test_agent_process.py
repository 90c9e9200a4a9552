"""Real agents in subprocesses against a real server on loopback: enroll, sync, lock, SIGTERM, outages."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from tests.e2e.fleet_cli import (
    EDGEFLEET,
    EXAMPLES,
    agent_command,
    cli,
    enroll_agent,
    push_artifact,
    wait_for,
)

from edgefleet.sim.netcut import CuttableLink

pytestmark = pytest.mark.slow


def device_json(server, device_id: str) -> dict:
    return json.loads(cli(server, "device", "show", device_id, "--json").stdout)


def _slot(server, device_id: str) -> dict:
    return ((device_json(server, device_id).get("report") or {}).get("slots") or {}).get("default") or {}


def start_agent(data_dir: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        agent_command(data_dir, "--poll-interval", "0.2", "--backoff-cap", "1", *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def enrolled(live_server, tmp_path):
    link = CuttableLink("127.0.0.1", int(live_server.url.rsplit(":", 1)[1]))
    cli(live_server, "class", "apply", str(EXAMPLES))
    data_dir = tmp_path / "agent"
    device_id = enroll_agent(live_server, data_dir, server_url=link.url, labels=("site=ward-3",))
    yield live_server, link, data_dir, device_id
    link.close()


def test_agent_syncs_reports_and_stops_cleanly_on_sigterm(enrolled, tmp_path):
    server, _link, data_dir, device_id = enrolled
    art = push_artifact(server, tmp_path, "1.0.0")
    cli(server, "device", "pin", art, "--class", "medical-cart-cpu")
    agent = start_agent(data_dir)
    try:
        report = wait_for(
            lambda: _slot(server, device_id).get("active") == art and _slot(server, device_id),
            what="the agent installing and reporting its assignment",
        )
        assert report["state"] in ("trial", "idle", "committed")
        # A second agent on the same data dir refuses to run.
        second = subprocess.run(
            [*EDGEFLEET, "agent", "run", "--data-dir", str(data_dir)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode != 0
        assert "agent_already_running" in second.stderr
    finally:
        agent.send_signal(signal.SIGTERM)
        _, stderr = agent.communicate(timeout=20)
    assert agent.returncode == 0, stderr
    assert "event=agent_stopped" in stderr
    assert "event=desired_state_accepted" in stderr
    status = json.loads(
        subprocess.run(
            [*EDGEFLEET, "agent", "status", "--data-dir", str(data_dir), "--json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert status["slots"] == {"default": art}
    assert status["active"] == {"default": art}
    assert status["serving"]["mode"]


def test_agent_keeps_its_state_through_an_outage_and_recovers_by_itself(enrolled, tmp_path):
    server, link, data_dir, device_id = enrolled
    art1 = push_artifact(server, tmp_path, "1.0.0")
    cli(server, "device", "pin", art1, "--class", "medical-cart-cpu")
    agent = start_agent(data_dir)
    try:
        wait_for(lambda: _slot(server, device_id).get("active") == art1, what="first install")
        link.cut()
        art2 = push_artifact(server, tmp_path, "2.0.0")
        cli(server, "device", "pin", art2, "--device", device_id)
        time.sleep(3)  # several failed polls, backing off
        assert _slot(server, device_id)["active"] == art1  # nothing new reached the device
        link.restore()
        wait_for(lambda: _slot(server, device_id).get("active") == art2, what="catch-up after the outage")
    finally:
        agent.send_signal(signal.SIGTERM)
        _, stderr = agent.communicate(timeout=20)
    assert "event=poll_failed" in stderr
    assert "server_unreachable" in stderr
    # Restart: the agent resumes from its persisted generation without re-installing.
    (data_dir / "serving-endpoint").unlink()
    agent = start_agent(data_dir)
    try:
        wait_for(lambda: (data_dir / "serving-endpoint").exists(), what="the restarted agent serving")
        time.sleep(1.0)  # a few polls
    finally:
        agent.send_signal(signal.SIGTERM)
        _, stderr = agent.communicate(timeout=20)
    assert "event=agent_started" in stderr
    assert "event=desired_state_accepted" not in stderr


def test_revoked_agent_is_refused_and_keeps_running_its_state(enrolled, tmp_path):
    """Revocation refuses the device's requests; the agent neither crashes nor stops serving: it keeps
    answering with its last good model and keeps retrying with backoff, in the same process."""
    server, _link, data_dir, device_id = enrolled
    art = push_artifact(server, tmp_path, "1.0.0")
    cli(server, "device", "pin", art, "--class", "medical-cart-cpu")
    agent = start_agent(data_dir)
    x = [[0.1 * i for i in range(16)]]

    def answered_by_art(http: httpx.Client) -> bool:
        r = http.post("/v1/predict", json={"inputs": {"x": x}})
        return r.status_code == 200 and r.json()["artifact_id"] == art

    try:
        wait_for(lambda: _slot(server, device_id).get("active") == art, what="install")
        endpoint_file = data_dir / "serving-endpoint"
        endpoint = wait_for(lambda: endpoint_file.exists() and endpoint_file.read_text(), what="serving")
        with httpx.Client(base_url=endpoint, timeout=10) as http:
            wait_for(lambda: answered_by_art(http), what="the active model answering")
            cli(server, "device", "revoke", device_id, "--reason", "stolen", "--yes")
            time.sleep(3.0)  # several refused polls and uploads at --backoff-cap 1
            assert agent.poll() is None, "the revoked agent exited"
            assert endpoint_file.read_text() == endpoint  # the same server, not a restarted one
            answers = [answered_by_art(http) for _ in range(5)]
            assert all(answers), "the revoked agent still serves its last good model"
        assert agent.poll() is None
    finally:
        agent.send_signal(signal.SIGTERM)
        _, stderr = agent.communicate(timeout=20)
    assert agent.returncode == 0, stderr  # it was still running, and stopped cleanly on SIGTERM
    assert "event=agent_stopped" in stderr
    assert stderr.count("event=agent_started") == 1  # never restarted in between
    refused = [
        line for line in stderr.splitlines() if "event=poll_failed" in line and "device_revoked" in line
    ]
    assert len(refused) >= 2, stderr  # it kept polling (with backoff) after the first refusal
    assert "Traceback" not in stderr
    assert device_json(server, device_id)["status"] == "revoked"
    assert _slot(server, device_id)["active"] == art  # its last report before the revocation


def test_corrupted_identity_is_a_clear_error_not_a_crash_loop(enrolled):
    _server, _link, data_dir, _device_id = enrolled
    (data_dir / "identity" / "device.json").write_text("{garbage")
    proc = subprocess.run(
        [*EDGEFLEET, "agent", "run", "--data-dir", str(data_dir)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0
    assert "corrupt_state_file" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_device_list_filters_from_the_cli(enrolled):
    server, _link, _data_dir, device_id = enrolled
    listing = json.loads(cli(server, "device", "list", "--label", "site=ward-3", "--json").stdout)
    assert [d["id"] for d in listing["items"]] == [device_id]
    none = json.loads(cli(server, "device", "list", "--label", "site=elsewhere", "--json").stdout)
    assert none["items"] == []
    table = cli(server, "device", "list").stdout
    assert device_id in table
    assert "medical-cart-cpu" in table
    with httpx.Client() as http:
        assert http.get(f"{server.url}/healthz").status_code == 200


def test_the_agent_serves_its_active_model_and_its_telemetry_reaches_the_server(enrolled, tmp_path):
    server, _link, data_dir, device_id = enrolled
    art = push_artifact(server, tmp_path, "1.0.0")
    cli(server, "device", "pin", art, "--class", "medical-cart-cpu")
    agent = start_agent(data_dir, "--telemetry-window", "1", "--telemetry-interval", "0.5")
    try:
        wait_for(lambda: _slot(server, device_id).get("active") == art, what="install")
        endpoint = wait_for(
            lambda: (data_dir / "serving-endpoint").exists() and (data_dir / "serving-endpoint").read_text()
        )
        x = [[0.1 * i for i in range(16)]]
        answers = []
        with httpx.Client(base_url=endpoint, timeout=10) as http:
            for _ in range(20):
                r = http.post("/v1/predict", json={"inputs": {"x": x}})
                if r.status_code == 200 and r.json()["artifact_id"] == art:
                    answers.append(r.json())
                time.sleep(0.05)
            bad = http.post("/v1/predict", json={"inputs": {"x": [[1.0, 2.0]]}})
        assert answers, "the active model answered"
        assert answers[-1]["model_version"] == "digits/1.0.0"
        assert answers[-1]["mode"]
        assert len(answers[-1]["outputs"]["probs"]["data"][0]) == 4
        assert bad.status_code == 400  # wrong shape: a clear 4xx, the agent keeps serving

        wait_for(
            lambda: _requests_seen(server, device_id) >= len(answers), what="telemetry arriving at the server"
        )
        health = json.loads(cli(server, "fleet", "health", "--class", "medical-cart-cpu", "--json").stdout)
        [group] = [g for g in health["by_model_version"] if g["model_version"] == "digits/1.0.0"]
        assert group["requests"] >= len(answers)
        assert group["latency_ms"]["p95"] > 0
        assert "digits/1.0.0" in cli(server, "fleet", "health").stdout
        device_view = cli(server, "device", "telemetry", device_id).stdout
        assert device_id in device_view
        assert "LATE_S" in device_view
        # the install's journaled steps reached the server as update events, one per step
        steps = wait_for(lambda: _install_steps(server, device_id), what="install step events at the server")
        for step in ("download", "verify", "stage", "load", "health", "switch"):
            assert steps.count(f"install_{step}_done") == 1, steps
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.communicate(timeout=20)


def _install_steps(server, device_id: str) -> list[str] | None:
    """The update event codes the server holds for the device, once the install's switch is among them."""
    with httpx.Client(base_url=server.url, headers=server.admin_headers) as http:
        events = http.get(f"/v1/devices/{device_id}/telemetry", params={"limit": 200}).json()["events"]
    codes = [e["code"] for e in events if e["kind"] == "update"]
    return codes if "install_switch_done" in codes else None


def _requests_seen(server, device_id: str) -> int:
    with httpx.Client(base_url=server.url, headers=server.admin_headers) as http:
        health = http.get("/v1/fleet/health", params={"hardware_class": "medical-cart-cpu"}).json()
    return int(health["totals"]["requests"])


def test_a_class_pinned_fallback_is_installed_and_ready_for_the_degraded_ladder(enrolled, tmp_path):
    server, _link, data_dir, device_id = enrolled
    art = push_artifact(server, tmp_path, "1.0.0")
    small = push_artifact(server, tmp_path, "3.0.0")  # stands in for the class's small fallback model
    cli(server, "device", "pin", art, "--class", "medical-cart-cpu")
    cli(server, "device", "pin", small, "--class", "medical-cart-cpu", "--slot", "fallback")
    agent = start_agent(data_dir)
    try:
        wait_for(
            lambda: (
                _slot(server, device_id).get("active") == art
                and (
                    (device_json(server, device_id)["report"]["slots"].get("fallback") or {}).get("active")
                    == small
                )
            ),
            what="the active model and the fallback installed",
        )
        status = json.loads(
            subprocess.run(
                [*EDGEFLEET, "agent", "status", "--data-dir", str(data_dir), "--json"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        assert status["active"] == {"default": art, "fallback": small}
        assert status["serving"]["fallback_configured"] is True
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.communicate(timeout=20)
