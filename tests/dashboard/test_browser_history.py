"""Charts over time in a real headless Chromium, fed by real agents: two ``edgefleet agent run`` processes
serve real requests on 1.0.0, then a rollout sends a signed 2.0.0 that is several times slower (a chain of
MatMuls). The history page draws 2.0.0's latency as its own series, above 1.0.0's from the rollout's start
(marked on the time axis), and the rollout's story draws the latency gate that halted it crossing its
threshold, with the halt marked. Charts are server-drawn SVG with keyboard-reachable data tables;
screenshots are kept."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import threading
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
import pytest
from tests.agent.crash.artifacts import slow_model
from tests.e2e.fleet_cli import EXAMPLES, cli, enroll_agent, push_artifact, run_agent, wait_for

from .browser import CHROMIUM, sign_in_page

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason=f"{CHROMIUM} is not installed"),
]
CLASS = "medical-cart-cpu"
SPEC = {
    "stages": [
        {"count": 1, "soak_s": 20, "gates": {"min_requests": 30, "max_latency_p95_ratio": 1.5}},
        {"percent": 100, "soak_s": 0},
    ]
}


def _active(server, device_id: str) -> str | None:
    report = json.loads(cli(server, "device", "show", device_id, "--json").stdout).get("report") or {}
    return ((report.get("slots") or {}).get("default") or {}).get("active")


def _traffic(endpoints: list[str], stop: threading.Event) -> None:
    rng = np.random.default_rng(7)
    clients = [httpx.Client(base_url=e, timeout=10) for e in endpoints]
    try:
        while not stop.is_set():
            for client in clients:
                with contextlib.suppress(httpx.HTTPError):  # an agent swapping versions: go on
                    client.post("/v1/predict", json={"inputs": {"x": rng.standard_normal((1, 16)).tolist()}})
            stop.wait(0.02)
    finally:
        for client in clients:
            client.close()


def test_a_slower_version_rises_on_the_history_chart_and_halts_on_the_gate_chart(
    live_server_factory, chromium, shots, tmp_path: Path
):
    server = live_server_factory(rollout_tick_s=0.3)
    cli(server, "class", "apply", str(EXAMPLES))
    v1 = push_artifact(server, tmp_path, "1.0.0")
    cli(server, "device", "pin", v1, "--class", CLASS)
    agents, devices, stop = [], [], threading.Event()
    traffic = None
    try:
        for i in range(2):
            data_dir = tmp_path / f"agent{i}"
            devices.append(enroll_agent(server, data_dir))
            agents.append(
                run_agent(
                    data_dir,
                    "--poll-interval",
                    "0.3",
                    "--telemetry-window",
                    "1",
                    "--telemetry-interval",
                    "0.5",
                )
            )
        wait_for(lambda: all(_active(server, d) == v1 for d in devices), timeout_s=90, what="1.0.0 on both")
        endpoints = [
            wait_for(
                lambda d=d: (
                    (tmp_path / d / "serving-endpoint").exists()
                    and (tmp_path / d / "serving-endpoint").read_text().strip()
                ),
                timeout_s=30,
                what="serving endpoint",
            )
            for d in ("agent0", "agent1")
        ]
        traffic = threading.Thread(target=_traffic, args=(endpoints, stop), daemon=True)
        traffic.start()
        health = f"/v1/fleet/health?hardware_class={CLASS}"
        admin = {"authorization": f"Bearer {server.admin_token}"}
        wait_for(
            lambda: httpx.get(server.url + health, headers=admin).json()["totals"]["requests"] > 100,
            timeout_s=60,
            what="1.0.0 traffic in telemetry",
        )
        slower = push_artifact(server, tmp_path, "2.0.0", model_bytes=slow_model(), latency_ceiling_ms=5000)
        spec = tmp_path / "spec.json"
        spec.write_text(json.dumps(SPEC))
        created = cli(
            server, "rollout", "create", "--model", "digits", "--target", f"{CLASS}={slower}",
            "--spec", str(spec), "--json",
        )  # fmt: skip
        rollout_id = json.loads(created.stdout)["id"]
        wait_for(
            lambda: (
                json.loads(cli(server, "rollout", "status", rollout_id, "--json").stdout)["status"]
                == "halted"
            ),
            timeout_s=180,
            what="the rollout halted on latency",
        )
        status = json.loads(cli(server, "rollout", "status", rollout_id, "--json").stdout)
        gate_name = status["halt_reason"]["gate"]  # the class envelope or the ratio to 1.0.0: both latency
        assert gate_name in ("latency_p95_ms", "latency_p95_ratio"), status["halt_reason"]

        # The API: 2.0.0 is its own series, above 1.0.0, and only from the rollout's start on.
        history = httpx.get(
            f"{server.url}/v1/fleet/health/history",
            params={"hardware_class": CLASS, "range": "hour"},
            headers=admin,
        ).json()
        p95 = history["metrics"]["latency_p95_ms"]["series"]
        # agents name a version <model>/<version> once it serves, or by artifact id around an install
        new_keys = [k for k in p95 if k in ("digits/2.0.0", slower)]
        old_keys = [k for k in p95 if k in ("digits/1.0.0", v1)]
        assert "digits/2.0.0" in new_keys, sorted(p95)
        assert "digits/1.0.0" in old_keys, sorted(p95)
        created_at = datetime.fromisoformat(
            next(e["at"] for e in history["events"] if e["kind"] == "created")
        )
        v2_points = [
            (datetime.fromisoformat(t), v)
            for k in new_keys
            for t, v in zip(history["buckets"], p95[k], strict=True)
            if v is not None
        ]
        v1_points = [v for k in old_keys for v in p95[k] if v is not None]
        assert v2_points
        first_v2 = min(t for t, _ in v2_points)
        assert first_v2 >= created_at.replace(second=0, microsecond=0)  # none before the rollout's minute
        assert max(v for _, v in v2_points) > 1.5 * min(v1_points)
        assert any(e["kind"] == "halt" for e in history["events"])

        expect = sync_api.expect
        page = chromium.new_context(viewport={"width": 1366, "height": 900}).new_page()
        sign_in_page(page, server.url, server.admin_token)
        page.goto(f"{server.url}/dashboard/history?hardware_class={CLASS}&range=hour")
        figure = page.locator("#fig-latency_p95_ms")
        expect(figure.locator("svg[role=img]")).to_be_visible()
        expect(figure.locator("path.line")).not_to_have_count(0)
        expect(figure.locator("text.legend", has_text="digits/2.0.0")).to_have_count(1)  # its own series
        expect(figure.locator("line.marker.m-halt")).to_have_count(1)
        figure.focus()  # keyboard: the chart takes focus, its data table opens from the keyboard
        expect(figure).to_be_focused()
        page.keyboard.press("Tab")
        summary = page.get_by_text("Data table: Latency p95")
        expect(summary).to_be_focused()
        page.keyboard.press("Enter")
        expect(page.locator("#h-latency_p95_ms ~ details table")).to_be_visible()
        page.screenshot(path=shots / "history-slower-version.png", full_page=True)

        page.goto(f"{server.url}/dashboard/rollouts/{rollout_id}/story")
        gate = page.locator(f"#fig-{CLASS}-{gate_name}")
        expect(gate.locator("line.threshold")).to_have_count(1)
        expect(gate.locator("line.marker.m-halt")).to_have_count(1)
        expect(gate.locator("path.line.s0")).to_have_count(1)
        page.screenshot(path=shots / "rollout-story-halt.png", full_page=True)

        page.goto(f"{server.url}/dashboard/history?hardware_class={CLASS}&range=custom"
                  "&start=2026-01-02T00:00&end=2026-01-01T00:00")  # fmt: skip
        expect(page.get_by_role("alert")).to_contain_text("history_range_inverted")
        expect(page.locator("svg.chart")).to_have_count(0)
        page.screenshot(path=shots / "history-bad-range.png", full_page=True)
    finally:
        stop.set()
        if traffic is not None:
            traffic.join(timeout=10)
        for agent in agents:
            agent.send_signal(signal.SIGTERM)
        for agent in agents:
            agent.communicate(timeout=30)
