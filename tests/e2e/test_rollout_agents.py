"""Rollouts with real agent processes: a model that fails its on-device health check stops the rollout in its
first stage, and nothing it touched leaves the good version."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from tests.agent.crash.artifacts import classifier, nan_model
from tests.e2e.fleet_cli import (
    EDGEFLEET,
    EXAMPLES,
    cli,
    create_rollout,
    enroll_agent,
    push_artifact,
    run_agent,
    wait_for,
)

pytestmark = pytest.mark.slow


def _active(server, device_id: str) -> str | None:
    report = json.loads(cli(server, "device", "show", device_id, "--json").stdout).get("report") or {}
    return ((report.get("slots") or {}).get("default") or {}).get("active")


def test_a_model_failing_its_health_check_is_stopped_at_the_first_stage(live_server, tmp_path: Path):
    server = live_server
    cli(server, "class", "apply", str(EXAMPLES))
    v1 = push_artifact(server, tmp_path, "1.0.0")
    cli(server, "device", "pin", v1, "--class", "medical-cart-cpu")
    agents, devices = [], []
    try:
        for i in range(3):
            devices.append(enroll_agent(server, tmp_path / f"agent{i}"))
            agents.append(run_agent(tmp_path / f"agent{i}", "--poll-interval", "0.3", "--no-serve"))
        wait_for(
            lambda: all(_active(server, d) == v1 for d in devices), timeout_s=90, what="1.0.0 everywhere"
        )
        broken = push_artifact(server, tmp_path, "2.0.0", model_bytes=nan_model())  # signed, but outputs NaN
        rollout_id = create_rollout(server, broken, "--stages", "1,100%", "--soak", "1s")
        watch = subprocess.run(
            [*EDGEFLEET, "rollout", "watch", rollout_id, "--interval", "0.5s"],
            capture_output=True,
            text=True,
            timeout=120,
            env={
                **os.environ,
                "EDGEFLEET_SERVER": server.url,
                "EDGEFLEET_TOKEN": server.admin_token,
            },
        )
        rollout = json.loads(cli(server, "rollout", "status", rollout_id, "--json").stdout)
        assert rollout["status"] == "halted", watch.stdout[-2000:]
        assert rollout["halt_reason"]["gate"] == "install_failure_rate"
        assert rollout["halt_reason"]["stage"] == 0
        assert rollout["halt_reason"]["failed_devices"] == 1
        # Every device, the canary included, still runs 1.0.0: the candidate never became active.
        wait_for(lambda: all(_active(server, d) == v1 for d in devices), timeout_s=30, what="all on 1.0.0")
    finally:
        for agent in agents:
            agent.send_signal(signal.SIGTERM)
        for agent in agents:
            agent.communicate(timeout=30)


def test_a_shadow_stage_measures_agreement_on_live_traffic_and_halts_a_disagreeing_model(
    live_server, tmp_path: Path
):
    """The candidate runs beside the serving model on real requests; only agreement statistics travel."""

    server = live_server
    cli(server, "class", "apply", str(EXAMPLES))
    v1 = push_artifact(server, tmp_path, "1.0.0")
    cli(server, "device", "pin", v1, "--class", "medical-cart-cpu")
    data_dir = tmp_path / "agent"
    device_id = enroll_agent(server, data_dir)
    agent = run_agent(
        data_dir,
        "--poll-interval",
        "0.3",
        "--telemetry-window",
        "1",
        "--telemetry-interval",
        "0.5",
        "--shadow-fraction",
        "1.0",
    )
    try:
        wait_for(lambda: _active(server, device_id) == v1, timeout_s=90, what="1.0.0 active")
        other = push_artifact(server, tmp_path, "2.0.0", model_bytes=classifier(seed=99))  # different weights
        spec = tmp_path / "spec.json"
        spec.write_text(
            json.dumps(
                {
                    "stages": [
                        {
                            "count": 1,
                            "soak_s": 0,
                            "shadow": True,
                            "gates": {"min_shadow_agreement": 0.95, "min_requests": 20},
                        },
                        {"percent": 100, "soak_s": 0},
                    ]
                }
            )
        )
        created = cli(
            server,
            "rollout",
            "create",
            "--model",
            "digits",
            "--target",
            f"medical-cart-cpu={other}",
            "--spec",
            str(spec),
            "--json",
        )
        rollout_id = json.loads(created.stdout)["id"]
        endpoint = wait_for(
            lambda: (data_dir / "serving-endpoint").exists() and (data_dir / "serving-endpoint").read_text()
        )
        shadow_seen = wait_for(
            lambda: (
                (
                    (
                        json.loads(cli(server, "device", "show", device_id, "--json").stdout).get("report")
                        or {}
                    )
                    .get("slots", {})
                    .get("default.shadow", {})
                    .get("active")
                )
                == other
            ),
            timeout_s=90,
            what="the candidate installed in the shadow slot",
        )
        assert shadow_seen
        rng = np.random.default_rng(3)
        with httpx.Client(base_url=endpoint, timeout=10) as http:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                r = http.post("/v1/predict", json={"inputs": {"x": rng.standard_normal((1, 16)).tolist()}})
                assert r.status_code == 200
                assert r.json()["artifact_id"] == v1  # answers always come from the serving version
                status = json.loads(cli(server, "rollout", "status", rollout_id, "--json").stdout)
                if status["status"] != "running":
                    break
                time.sleep(0.05)
        assert status["status"] == "halted"
        assert status["halt_reason"]["gate"] == "shadow_agreement"
        assert status["halt_reason"]["observed"] < 0.95
        assert _active(server, device_id) == v1
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.communicate(timeout=30)
