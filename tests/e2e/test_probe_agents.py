"""Probes with real agents: two ``agent run`` processes of one class measure three candidates of a real build
while they serve, report, and ``build select --from-probe`` chooses on their figures."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest
from tests.e2e.fleet_cli import EXAMPLES, cli, enroll_agent, run_agent, wait_for

pytestmark = pytest.mark.slow

CLASS = "medical-cart-cpu"


def _active(server, device_id: str) -> str | None:
    report = json.loads(cli(server, "device", "show", device_id, "--json").stdout).get("report") or {}
    return ((report.get("slots") or {}).get("default") or {}).get("active")


def _build(server, tmp_path: Path) -> Path:
    """A real ``edgefleet build`` of the digits MLP for the class, keeping its candidates."""
    import edgefleet.optimize.digits as digits

    data = tmp_path / "digits"
    assert digits.main([str(data)]) == 0
    out = tmp_path / "build"
    cli(
        server,
        "build",
        str(data / "mlp.onnx"),
        "--classes",
        str(EXAMPLES),
        "--class",
        CLASS,
        "--calibration",
        str(data / "calibration.npz"),
        "--validation",
        str(data / "validation.npz"),
        "--name",
        "digits",
        "--version",
        "1.0.0",
        "--release-counter",
        "1",
        "--out",
        str(out),
        "--quick",
        "--keep-candidates",
        "--no-progress",
        check=False,  # a class may fail on this host; the probe is what decides
    )
    assert (out / "candidates" / "index.json").is_file()
    return out


class _Traffic:
    """Inference requests to every agent's serving endpoint until stopped; every answer is recorded."""

    def __init__(self, endpoints: list[str]) -> None:
        self.endpoints = endpoints
        self.stop = threading.Event()
        self.answers: list[tuple[int, str | None]] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rng = np.random.default_rng(5)
        clients = [httpx.Client(base_url=e, timeout=30) for e in self.endpoints]
        try:
            while not self.stop.is_set():
                for client in clients:
                    x = rng.random((1, 1, 8, 8), dtype=np.float32)  # in the calibrated range
                    r = client.post("/v1/predict", json={"inputs": {"input": x.tolist()}})
                    artifact = r.json().get("artifact_id") if r.status_code == 200 else r.text[:200]
                    self.answers.append((r.status_code, artifact))
                self.stop.wait(0.02)
        finally:
            for client in clients:
                client.close()


def test_two_agents_measure_three_candidates_while_serving_and_select_uses_device_figures(
    live_server, tmp_path: Path
):
    server = live_server
    release_key = str(server.data_dir / "keys" / "release.key")
    cli(server, "class", "apply", str(EXAMPLES))
    build = _build(server, tmp_path)
    # What the devices serve meanwhile: the host's choice for the class, signed and pinned as today.
    cli(server, "model", "create", "digits")
    cli(server, "model", "version", "add", "digits", "1.0.0", str(tmp_path / "digits" / "mlp.onnx"))
    serving = json.loads(cli(server, "artifact", "push", str(build / CLASS), "--json").stdout)["id"]
    cli(server, "publish", str(build / CLASS), "--release-key", release_key)
    cli(server, "device", "pin", serving, "--class", CLASS)

    report = json.loads((build / "report.json").read_text())
    entry = next(c for c in report["classes"] if c["hardware_class"] == CLASS)
    names = [c["name"] for c in entry["candidates"] if not c.get("error")]
    three = ["fp32", *[n for n in names if n != "fp32"][:2]]
    assert len(three) == 3, names

    # Refused before anything is sent: no device of the class is enrolled yet, so nothing is signed.
    targets_before = httpx.get(f"{server.url}/v1/tuf", headers=server.admin_headers).json()["targets_version"]
    refused = cli(
        server, "probe", "create", str(build), "--class", CLASS, "--release-key", release_key, check=False
    )
    assert refused.returncode == 6, refused.stderr  # conflict
    assert "no_enrolled_device" in refused.stderr
    assert (
        httpx.get(f"{server.url}/v1/tuf", headers=server.admin_headers).json()["targets_version"]
        == targets_before
    )

    agents, devices, data_dirs = [], [], []
    try:
        for i in range(2):
            data_dir = tmp_path / f"agent{i}"
            devices.append(enroll_agent(server, data_dir))
            data_dirs.append(data_dir)
            agents.append(run_agent(data_dir, "--poll-interval", "0.3"))
        wait_for(lambda: all(_active(server, d) == serving for d in devices), timeout_s=120, what="v1 active")
        endpoints = [
            wait_for(lambda d=d: (d / "serving-endpoint").exists() and (d / "serving-endpoint").read_text())
            for d in data_dirs
        ]
        traffic = _Traffic([e.strip() for e in endpoints])
        traffic.thread.start()
        try:
            args = ["probe", "create", str(build), "--class", CLASS, "--devices", "2"]
            for name in three:
                args += ["--candidate", name]
            args += ["--runs", "20", "--sustained-s", "3", "--release-key", release_key, "--json"]
            probe_id = json.loads(cli(server, *args).stdout)["id"]
            cli(server, "probe", "watch", probe_id, "--interval-s", "0.5", "--timeout-s", "300")
        finally:
            traffic.stop.set()
            traffic.thread.join(timeout=60)
        print(cli(server, "probe", "show", probe_id).stdout)  # the figures, for whoever runs this with -s
        probe = json.loads(cli(server, "probe", "show", probe_id, "--json").stdout)
        assert probe["status"] == "complete"
        assert not probe["partial"]
        assert sorted(d["device_id"] for d in probe["devices"]) == sorted(devices)
        for device in probe["devices"]:
            figures = {c["name"]: c for c in device["results"]["candidates"]}
            assert sorted(figures) == sorted(three)
            for c in figures.values():
                assert c["status"] == "measured", c
                assert [b["batch"] for b in c["latency"]] == [1, 4]  # the class's batch sizes
                assert all(b["p50_ms"] <= b["p95_ms"] <= b["p99_ms"] for b in c["latency"])
                assert c["load_ms"] > 0
                assert c["first_inference_ms"] > 0
                assert c["peak_rss_bytes"] > 0
                assert c["agreement_metric"] == "top1_agreement"
                assert c["task_metric"] == "accuracy"
                sustained = c["sustained"]
                assert sustained["duration_s"] == 3
                assert sustained["runs"] > 0
                assert sustained["first_p95_ms"] > 0
                assert sustained["last_p95_ms"] > 0
                assert sustained["drift_ratio"] > 0
                if sustained["thermal"] == "unavailable":
                    assert sustained["temp_rise_c"] is None or sustained["throttle_events"] is None
            assert figures["fp32"]["agreement"] == 1.0
        # Serving went on: no request failed, and every answer came from the version already active.
        assert traffic.answers, "the client sent nothing"
        failed = [a for a in traffic.answers if a[0] != 200]
        assert not failed, failed[:5]
        assert {a[1] for a in traffic.answers} == {serving}
        assert all(_active(server, d) == serving for d in devices)
        for data_dir in data_dirs:  # the scratch area is gone; the slots were never touched
            assert not any((data_dir / "probe-scratch").glob("*"))

        chosen = json.loads(
            cli(server, "build", "select", str(build), "--from-probe", probe_id, "--json").stdout
        )
        print(chosen["summary"])
        assert chosen["measured_on"] == "device"
        assert chosen["probe_id"] == probe_id
        assert chosen["chosen"] in three
        assert set(chosen["candidates"]) == set(three)
        manifest = json.loads((build / CLASS / "manifest.json").read_text())
        assert manifest["optimization"]["candidate"] == chosen["chosen"]
        assert manifest["metrics"]["measured_on"].startswith(f"device: probe {probe_id} (2 devices")
        assert manifest["build_report"]["candidates"][0]["measured_on"] == "device"
        # The class's sustained-latency budget is judged on the devices' 3 s runs (the build ran none).
        assert manifest["metrics"]["sustained_measured_on"].startswith("device: 3 s run; probe ")
        assert manifest["metrics"]["sustained_last_p95_ms"] > 0
        assert manifest["metrics"]["sustained_unmeasured"] is None
        # The build report shows the device figures beside the host's, each labelled where measured.
        entry = next(
            c
            for c in json.loads((build / "report.json").read_text())["classes"]
            if c["hardware_class"] == CLASS
        )
        places = {(f["candidate"], f["where"]) for f in entry["figures"]}
        assert {(n, "device") for n in three} <= places
        assert {(n, "host") for n in three} <= places
        assert entry["latency_place"] == "device"
        assert entry["sustained_unmeasured"] is None
        assert entry["host_selection"]["summary"]
        assert probe_id in (build / "report.html").read_text()
    finally:
        for agent in agents:
            agent.send_signal(signal.SIGTERM)
        for agent in agents:
            agent.communicate(timeout=30)
