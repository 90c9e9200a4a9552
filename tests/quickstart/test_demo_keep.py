"""``edgefleet demo --keep``: everything stays up (cart-2's link included) with its URLs printed, until
SIGTERM; then every process it started stops."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from tests.quickstart.demo_run import alive, reuse_cached_model

pytestmark = [pytest.mark.slow, pytest.mark.timeout(660)]

READY_TIMEOUT_S = 540
_AGENT = re.compile(r"agent (\S+): inference at (\S+)")
_SERVER = re.compile(r"control plane (http://\S+), dashboard (http://\S+)")
_TOKEN = re.compile(r"admin token: (\S+)")


def _wait_ready(stderr_file: Path, proc: subprocess.Popen[str]) -> str:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        text = stderr_file.read_text()
        if "press Ctrl-C" in text:
            return text
        if proc.poll() is not None:
            pytest.fail(f"the demo exited with {proc.returncode} before it was ready\n{text[-6000:]}")
        time.sleep(0.5)
    pytest.fail(f"the demo was not ready within {READY_TIMEOUT_S} s\n{stderr_file.read_text()[-6000:]}")


def test_keep_leaves_everything_reachable_until_sigterm(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    reuse_cached_model(workdir)
    summary_file, stderr_file = tmp_path / "summary.json", tmp_path / "demo.stderr"
    with stderr_file.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgefleet.cli", "demo", "--fast", "--keep", "--workdir", str(workdir),
             "--summary-json", str(summary_file)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            text=True,
        )  # fmt: skip
        try:
            out = _wait_ready(stderr_file, proc)
            server = _SERVER.search(out)
            assert server, out[-3000:]
            server_url, dashboard_url = server.groups()
            token = _TOKEN.search(out).group(1)
            agents = dict(_AGENT.findall(out))
            assert set(agents) == {"robot-1", "cart-1", "cart-2"}
            pids = json.loads((workdir / "pids.json").read_text())
            assert all(alive(pid) for pid in pids.values())
            assert httpx.get(f"{server_url}/healthz", timeout=10).status_code == 200
            assert httpx.get(dashboard_url, timeout=10, follow_redirects=True).status_code == 200
            digit = np.load(workdir / "cache" / "digits" / "validation.npz")["input"][:1].tolist()
            for name, endpoint in agents.items():
                r = httpx.post(f"{endpoint}/v1/predict", json={"inputs": {"input": digit}}, timeout=10)
                assert r.status_code == 200, (name, r.text)
                assert r.json()["model_version"] == "digits/1.0.0", name
            # cart-2 reaches the control plane through the demo's own link: still online, still reporting.
            devices = httpx.get(
                f"{server_url}/v1/devices", headers={"authorization": f"Bearer {token}"}, timeout=10
            ).json()["items"]
            assert len(devices) == 3
            assert {d["status"] for d in devices} == {"online"}, devices
            assert json.loads(summary_file.read_text())["v2_rollout"]["status"] == "halted"
        finally:
            proc.send_signal(signal.SIGTERM)
            returncode = proc.wait(timeout=90)
    assert returncode == 0, stderr_file.read_text()[-4000:]
    assert "stopping the control plane and the agents" in stderr_file.read_text()
    assert [name for name, pid in pids.items() if alive(pid)] == []
    assert json.loads(summary_file.read_text())["processes_left"] == []
