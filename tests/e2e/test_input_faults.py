"""A failing sensor during a rollout, with a real agent process: a burst of NaN and wrongly shaped inputs is
refused with clear codes, counted as input faults (not model errors), does not halt the rollout or roll the
trial back, and the device's last successful inference time keeps moving."""

from __future__ import annotations

import io
import json
import signal
import time
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
import pytest
from tests.e2e.fleet_cli import (
    active_artifact,
    cli,
    create_rollout,
    one_agent_on_v1,
    push_artifact,
    wait_for,
)

pytestmark = pytest.mark.slow

IN_DIM = 16


def _telemetry(server, device_id: str) -> dict:
    return json.loads(cli(server, "device", "telemetry", device_id, "--json").stdout)


def _last_success(server, device_id: str) -> datetime | None:
    slot = (_telemetry(server, device_id).get("field") or {}).get("slots", {}).get("default") or {}
    at = slot.get("last_success_at")
    return datetime.fromisoformat(at) if at else None


def _npy(array: np.ndarray) -> bytes:
    body = io.BytesIO()
    np.save(body, array)
    return body.getvalue()


def test_a_burst_of_bad_inputs_during_a_rollout_is_counted_as_input_faults_not_errors(
    live_server, tmp_path: Path
) -> None:
    server = live_server
    v1, data_dir, device_id, agent = one_agent_on_v1(
        server, tmp_path, "--poll-interval", "0.3", "--telemetry-window", "1", "--telemetry-interval", "0.5"
    )
    rng = np.random.default_rng(5)
    nan = rng.standard_normal((1, IN_DIM)).astype(np.float32)
    nan[0, 3] = np.nan
    try:
        wait_for(lambda: active_artifact(server, device_id) == v1, timeout_s=90, what="1.0.0 active")
        endpoint = wait_for(
            lambda: (data_dir / "serving-endpoint").exists() and (data_dir / "serving-endpoint").read_text()
        )
        v2 = push_artifact(server, tmp_path, "2.0.0")
        spec = tmp_path / "spec.json"
        gates = {"max_error_rate": 0.05, "min_requests": 20}
        stages = [{"count": 1, "soak_s": 12, "gates": gates}, {"percent": 100, "soak_s": 0}]
        spec.write_text(json.dumps({"stages": stages}))
        rollout_id = create_rollout(server, v2, "--spec", str(spec))
        with httpx.Client(base_url=endpoint, timeout=10) as http:

            def serving_v2() -> bool:
                return bool(http.get("/v1/status").json().get("artifact_id") == v2)

            wait_for(serving_v2, timeout_s=90, what="the device serving 2.0.0 in stage 0")
            sent_nan = sent_shape = good = 0
            seen: list[datetime] = []
            deadline = time.monotonic() + 120
            next_look = 0.0
            while time.monotonic() < deadline:
                if sent_nan < 60:  # the burst: a camera sending NaN frames and truncated rows
                    for _ in range(5):
                        r = http.post(
                            "/v1/predict", content=_npy(nan), headers={"Content-Type": "application/x-npy"}
                        )
                        assert r.status_code == 422, r.text
                        assert r.json()["code"] == "input_not_finite"
                        sent_nan += 1
                        r = http.post("/v1/predict", json={"inputs": {"x": [[0.5] * (IN_DIM - 1)]}})
                        assert r.status_code == 400, r.text
                        assert r.json()["code"] == "tensor_shape_mismatch"
                        sent_shape += 1
                r = http.post(
                    "/v1/predict", json={"inputs": {"x": rng.standard_normal((1, IN_DIM)).tolist()}}
                )
                assert r.status_code == 200, r.text
                assert r.json()["artifact_id"] == v2
                good += 1
                if time.monotonic() >= next_look:
                    next_look = time.monotonic() + 2.0
                    at = _last_success(server, device_id)
                    if at is not None and (not seen or at != seen[-1]):
                        seen.append(at)
                    status = json.loads(cli(server, "rollout", "status", rollout_id, "--json").stdout)
                    if status["status"] != "running" and len(seen) >= 3:
                        break
                time.sleep(0.05)
        assert status["status"] == "completed", status.get("halt_reason")
        assert active_artifact(server, device_id) == v2  # the trial did not roll back for the sensor either
        # The device's last successful inference kept moving through the burst.
        assert len(seen) >= 3
        assert seen == sorted(seen)

        # Counted as input faults, apart from the model's errors, once the windows are uploaded.
        def counted() -> dict | None:
            totals = _telemetry(server, device_id)["totals"]
            faults = totals.get("input_faults_by_code", {})
            done = (
                faults.get("input_not_finite", 0) >= sent_nan
                and faults.get("tensor_shape_mismatch", 0) >= sent_shape
                # the good requests ran on after the burst, so their last window may still be on its way
                and totals.get("requests", 0) >= good
            )
            return totals if done else None

        totals = wait_for(counted, timeout_s=30, what="the input faults uploaded")
        assert totals["input_faults_by_code"] == {
            "input_not_finite": sent_nan,
            "tensor_shape_mismatch": sent_shape,
        }
        assert totals["errors_by_code"] == {}
        assert totals["requests"] == good
        slot = _telemetry(server, device_id)["field"]["slots"]["default"]
        assert slot["errors_by_kind"] == {"input": sent_nan + sent_shape}
        assert slot["problems"] == []
        assert slot["update_status"] is not None  # the installer's slot state travels with it
        assert _telemetry(server, device_id)["field"]["resources"]["disk_free_bytes"] > 0
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.communicate(timeout=30)
