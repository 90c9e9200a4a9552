"""Real agents in subprocesses against a real server on loopback: enroll, sync, lock, SIGTERM, outages."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from tests.e2e.netcut import CuttableLink

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "hardware-classes.toml"
EDGEFLEET = [sys.executable, "-m", "edgefleet.cli"]

pytestmark = pytest.mark.slow


def cli(server, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EDGEFLEET_SERVER": server.url, "EDGEFLEET_TOKEN": server.admin_token}
    proc = subprocess.run([*EDGEFLEET, *args], capture_output=True, text=True, timeout=120, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"edgefleet {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def wait_for(predicate, timeout_s: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def push_artifact(server, tmp_path: Path, version: str) -> str:
    """A registered artifact (bytes need not be a real model for the channel's purposes)."""
    art = tmp_path / f"art-{version}"
    art.mkdir()
    files = {"model.onnx": b"model-" + version.encode(), "golden.npz": b"golden-" + version.encode()}
    for name, data in files.items():
        (art / name).write_bytes(data)
    src = hashlib.sha256(files["model.onnx"]).hexdigest()
    manifest = {
        "model": "digits",
        "version": version,
        "hardware_class": "medical-cart-cpu",
        "runtime": {"name": "onnxruntime", "execution_providers": ["CPUExecutionProvider"]},
        "entrypoint": "model.onnx",
        "files": [
            {"path": n, "sha256": hashlib.sha256(d).hexdigest(), "length": len(d)} for n, d in files.items()
        ],
        "signature": {
            "inputs": [{"name": "x", "dtype": "float32", "shape": [1, 64]}],
            "outputs": [{"name": "y", "dtype": "float32", "shape": [1, 10]}],
        },
        "optimization": {"source_sha256": src},
        "health_check": {"golden_file": "golden.npz", "latency_ceiling_ms": 50},
        "release_counter": 1,
    }
    (art / "manifest.json").write_text(json.dumps(manifest))
    cli(server, "model", "create", "digits", check=False)
    (tmp_path / f"src-{version}.onnx").write_bytes(files["model.onnx"])
    cli(
        server,
        "model",
        "version",
        "add",
        "digits",
        version,
        str(tmp_path / f"src-{version}.onnx"),
        check=False,
    )
    out = cli(server, "artifact", "push", str(art), "--json")
    return json.loads(out.stdout)["id"]


def device_json(server, device_id: str) -> dict:
    return json.loads(cli(server, "device", "show", device_id, "--json").stdout)


def start_agent(data_dir: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            *EDGEFLEET,
            "agent",
            "run",
            "--data-dir",
            str(data_dir),
            "--poll-interval",
            "0.2",
            "--backoff-cap",
            "1",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def enrolled(live_server, tmp_path):
    link = CuttableLink("127.0.0.1", int(live_server.url.rsplit(":", 1)[1]))
    cli(live_server, "class", "apply", str(EXAMPLES))
    token = cli(
        live_server, "device", "token", "create", "--class", "medical-cart-cpu", "--label", "site=ward-3"
    ).stdout.strip()
    data_dir = tmp_path / "agent"
    out = cli(
        live_server,
        "agent",
        "enroll",
        "--server",
        link.url,
        "--token",
        token,
        "--data-dir",
        str(data_dir),
        "--json",
    )
    device_id = json.loads(out.stdout)["device_id"]
    yield live_server, link, data_dir, device_id
    link.close()


def test_agent_syncs_reports_and_stops_cleanly_on_sigterm(enrolled, tmp_path):
    server, _link, data_dir, device_id = enrolled
    art = push_artifact(server, tmp_path, "1.0.0")
    cli(server, "device", "pin", art, "--class", "medical-cart-cpu")
    agent = start_agent(data_dir)
    try:
        report = wait_for(
            lambda: (device_json(server, device_id).get("report") or {}).get("slots", {}).get("default"),
            what="the agent's report of its assignment",
        )
        assert report["state"] == f"assigned:{art}"
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


def test_agent_keeps_its_state_through_an_outage_and_recovers_by_itself(enrolled, tmp_path):
    server, link, data_dir, device_id = enrolled
    art1 = push_artifact(server, tmp_path, "1.0.0")
    cli(server, "device", "pin", art1, "--class", "medical-cart-cpu")
    agent = start_agent(data_dir)
    try:
        wait_for(lambda: device_json(server, device_id).get("report"), what="first report")
        link.cut()
        art2 = push_artifact(server, tmp_path, "2.0.0")
        cli(server, "device", "pin", art2, "--device", device_id)
        time.sleep(3)  # several failed polls, backing off
        assert (device_json(server, device_id)["report"]["slots"]["default"]["state"]) == f"assigned:{art1}"
        link.restore()
        wait_for(
            lambda: (
                device_json(server, device_id)["report"]["slots"]["default"]["state"] == f"assigned:{art2}"
            ),
            what="catch-up after the outage",
        )
    finally:
        agent.send_signal(signal.SIGTERM)
        _, stderr = agent.communicate(timeout=20)
    assert "event=poll_failed" in stderr
    assert "server_unreachable" in stderr
    # Restart: the agent resumes from its persisted generation without re-installing.
    agent = start_agent(data_dir)
    try:
        time.sleep(1.5)
    finally:
        agent.send_signal(signal.SIGTERM)
        _, stderr = agent.communicate(timeout=20)
    assert "event=agent_started" in stderr
    assert "event=desired_state_accepted" not in stderr


def test_revoked_agent_is_refused_and_keeps_running_its_state(enrolled, tmp_path):
    server, _link, data_dir, device_id = enrolled
    agent = start_agent(data_dir)
    try:
        wait_for(lambda: device_json(server, device_id).get("report"), what="first report")
        cli(server, "device", "revoke", device_id, "--reason", "stolen", "--yes")
        time.sleep(1.5)
    finally:
        agent.send_signal(signal.SIGTERM)
        _, stderr = agent.communicate(timeout=20)
    assert "device_revoked" in stderr
    assert device_json(server, device_id)["status"] == "revoked"


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
