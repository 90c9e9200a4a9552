"""The dashboard in a real headless Chromium, watching real agents: ``edgefleet agent run`` processes enrolled
with one-time tokens, installing signed artifacts and health-checking them on the device. A release that
fails its on-device health check halts its rollout; the operator sees it live, with the reason, and the
device page shows what the device itself reported."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest
from tests.agent.crash.artifacts import nan_model
from tests.e2e.fleet_cli import (
    EXAMPLES,
    cli,
    create_rollout,
    enroll_agent,
    push_artifact,
    run_agent,
    wait_for,
)

from .browser import CHROMIUM, sign_in_page

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason=f"{CHROMIUM} is not installed"),
]
LIVE_TIMEOUT_MS = 60_000


def _slot(server, device_id: str) -> dict:
    report = json.loads(cli(server, "device", "show", device_id, "--json").stdout).get("report") or {}
    return (report.get("slots") or {}).get("default") or {}


def _active(server, device_id: str) -> str | None:
    return _slot(server, device_id).get("active")


def test_operators_watch_real_agents_halt_a_rollout_on_a_failed_health_check(
    live_server_factory, chromium, shots, tmp_path: Path
):
    server = live_server_factory(rollout_tick_s=0.3)
    cli(server, "class", "apply", str(EXAMPLES))
    v1 = push_artifact(server, tmp_path, "1.0.0")
    cli(server, "device", "pin", v1, "--class", "medical-cart-cpu")
    made = cli(server, "token", "create", "--name", "olive", "--role", "operator", "--via-api", "--json")
    token = json.loads(made.stdout)["token"]
    agents, devices = [], []
    try:
        for i in range(2):
            devices.append(enroll_agent(server, tmp_path / f"agent{i}"))
            agents.append(run_agent(tmp_path / f"agent{i}", "--poll-interval", "0.3", "--no-serve"))
        wait_for(lambda: all(_active(server, d) == v1 for d in devices), timeout_s=90, what="1.0.0 on both")

        expect = sync_api.expect
        page = chromium.new_context(viewport={"width": 1366, "height": 900}).new_page()
        sign_in_page(page, server.url, token)
        page.goto(f"{server.url}/dashboard/devices/{devices[0]}")
        expect(page.locator("main")).to_contain_text("digits 1.0.0")  # the slot the agent itself reported
        page.screenshot(path=shots / "agents-device.png", full_page=True)

        broken = push_artifact(server, tmp_path, "2.0.0", model_bytes=nan_model())  # signed, outputs NaN
        rollout_id = create_rollout(server, broken, "--stages", "1,100%", "--soak", "1s")
        page.goto(f"{server.url}/dashboard/rollouts/{rollout_id}")
        expect(page.locator("#stage-label")).to_have_text("stage 1 of 2")
        halt = page.locator("#halt-reason")  # the page updates by itself: no reload
        expect(halt).to_contain_text("install_failure_rate", timeout=LIVE_TIMEOUT_MS)
        page.screenshot(path=shots / "agents-rollout-halted.png", full_page=True)
        status = json.loads(cli(server, "rollout", "status", rollout_id, "--json").stdout)
        assert status["status"] == "halted"
        assert status["halt_reason"]["failed_devices"] == 1

        # The canary reported the failed candidate; the page of that device shows it beside the good version.
        wait_for(
            lambda: any(_slot(server, d).get("failed_artifact") == broken for d in devices),
            timeout_s=30,
            what="the canary's report of the failed candidate",
        )
        canary = next(d for d in devices if _slot(server, d).get("failed_artifact") == broken)
        page.goto(f"{server.url}/dashboard/devices/{canary}")
        expect(page.locator("main")).to_contain_text(broken, timeout=LIVE_TIMEOUT_MS)
        expect(page.locator("main")).to_contain_text("digits 1.0.0")
        page.screenshot(path=shots / "agents-canary.png", full_page=True)
        assert all(_active(server, d) == v1 for d in devices)
    finally:
        for agent in agents:
            agent.send_signal(signal.SIGTERM)
        for agent in agents:
            agent.communicate(timeout=30)
