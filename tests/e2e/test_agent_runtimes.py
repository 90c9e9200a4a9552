"""Each class on its own runtime, end to end with real agent processes and a real server on loopback:
an OpenVINO IR artifact (built by ``edgefleet``'s OpenVINO path), a LiteRT artifact (MediaPipe's face
detector from the mediapipe wheel) and an ONNX Runtime artifact for a class whose CUDA provider this
machine does not have. Each is enrolled, signed, installed with its health check, served, and its telemetry
reaches the server; the third reports degraded (mode ``cpu``, reason ``accelerator_unavailable``)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from tests.e2e.fleet_cli import cli, enroll_agent, wait_for
from tests.e2e.test_agent_process import device_json, start_agent
from tests.wheel_models import face_detector_tflite

pytestmark = pytest.mark.slow

CLASSES = """
schema_version = 1
[class.intel-openvino-cpu]
cpu_arch = "x86_64"
precisions = ["fp32", "int8"]
budgets = { ram_mb = 1024, storage_mb = 1024, max_model_mb = 20 }
performance = { latency_p95_ms = 1000.0 }
[class.intel-openvino-cpu.runtime]
name = "openvino"
min_version = "2024.0"
execution_providers = ["CPUExecutionProvider"]

[class.arm-litert]
cpu_arch = "x86_64"
precisions = ["fp32", "fp16", "int8"]
budgets = { ram_mb = 1024, storage_mb = 1024, max_model_mb = 20 }
performance = { latency_p95_ms = 1000.0 }
[class.arm-litert.runtime]
name = "litert"
min_version = "1.0"
execution_providers = ["CPUExecutionProvider"]

[class.jetson-gpu]
cpu_arch = "x86_64"
precisions = ["fp32"]
budgets = { ram_mb = 1024, storage_mb = 1024, max_model_mb = 20 }
performance = { latency_p95_ms = 1000.0 }
[class.jetson-gpu.runtime]
name = "onnxruntime"
min_version = "1.16"
execution_providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
"""


def _publish(server, model: str, version: str, source: Path, art: Path) -> str:
    cli(server, "model", "create", model, check=False)
    cli(server, "model", "version", "add", model, version, str(source))
    artifact_id = json.loads(cli(server, "artifact", "push", str(art), "--json").stdout)["id"]
    cli(server, "publish", str(art), "--release-key", str(server.data_dir / "keys" / "release.key"))
    return artifact_id


def _openvino_artifact(tmp: Path) -> tuple[Path, Path]:
    from tests.agent.crash.artifacts import classifier

    from edgefleet.optimize import BuildConfig, run_build
    from edgefleet.protocol import parse_classes_toml

    source = tmp / "classifier.onnx"
    source.write_bytes(classifier(seed=5))
    rng = np.random.default_rng(0)
    for name, n in (("calib", 64), ("valid", 64)):
        np.savez(tmp / f"{name}.npz", x=rng.standard_normal((n, 16)).astype(np.float32))
    classes = [c for c in parse_classes_toml(CLASSES) if c.name == "intel-openvino-cpu"]
    config = BuildConfig.test_size(
        model_name="classifier", model_version="1.0.0", latency_runs=10, warmup_runs=1, mixed=False
    )
    run_build(source, classes, tmp / "calib.npz", tmp / "valid.npz", tmp / "ov-out", config)
    return source, tmp / "ov-out" / "intel-openvino-cpu"


def _litert_artifact(tmp: Path, tflite: Path) -> Path:
    from edgefleet.optimize import BuildConfig
    from edgefleet.optimize.litert_build import build_litert
    from edgefleet.protocol import parse_classes_toml

    x = np.random.default_rng(1).uniform(-1, 1, (8, 128, 128, 3)).astype(np.float32)
    np.savez(tmp / "faces.npz", input=x)
    classes = [c for c in parse_classes_toml(CLASSES) if c.name == "arm-litert"]
    config = BuildConfig.test_size(
        model_name="face-detector", model_version="1.0.0", task="embedding", latency_runs=5, golden_samples=2
    )
    build_litert(tflite, classes, tmp / "faces.npz", tmp / "faces.npz", tmp / "lite-out", config)
    return tmp / "lite-out" / "arm-litert"


def _gpu_artifact(tmp: Path) -> tuple[Path, Path]:
    from tests.agent.crash.artifacts import classifier, write_artifact

    manifest = write_artifact(
        tmp, "gpu-art", classifier(seed=7), providers=("CUDAExecutionProvider", "CPUExecutionProvider")
    ).to_dict()
    manifest["hardware_class"] = "jetson-gpu"
    manifest["model"] = "gpu-classifier"
    (tmp / "gpu-art" / "manifest.json").write_text(json.dumps(manifest))
    return tmp / "gpu-art" / "model.onnx", tmp / "gpu-art"


def _report(server, device_id: str) -> dict:
    return device_json(server, device_id).get("report") or {}


def _predict(endpoint: str, inputs: dict) -> dict:
    with httpx.Client(base_url=endpoint, timeout=30) as http:
        r = http.post("/v1/predict", json={"inputs": inputs})
    assert r.status_code == 200, r.text
    return r.json()


def _requests(server, hardware_class: str) -> int:
    with httpx.Client(base_url=server.url, headers=server.admin_headers) as http:
        health = http.get("/v1/fleet/health", params={"hardware_class": hardware_class}).json()
    return int(health["totals"]["requests"])


def test_openvino_litert_and_a_missing_accelerator_served_by_real_agents(live_server, tmp_path):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA: the accelerator is not missing")
    tflite = face_detector_tflite()
    if tflite is None:
        pytest.skip("pip could not fetch mediapipe 0.10.14")
    server = live_server
    classes_file = tmp_path / "classes.toml"
    classes_file.write_text(CLASSES)
    cli(server, "class", "apply", str(classes_file))

    ov_source, ov_art = _openvino_artifact(tmp_path)
    assert json.loads((ov_art / "manifest.json").read_text())["entrypoint"] == "model.xml"
    lite_art = _litert_artifact(tmp_path, tflite)
    gpu_source, gpu_art = _gpu_artifact(tmp_path)
    arts = {
        "intel-openvino-cpu": _publish(server, "classifier", "1.0.0", ov_source, ov_art),
        "arm-litert": _publish(server, "face-detector", "1.0.0", tflite, lite_art),
        "jetson-gpu": _publish(server, "gpu-classifier", "1.0.0", gpu_source, gpu_art),
    }
    agents, devices = {}, {}
    try:
        for hwclass, art in arts.items():
            cli(server, "device", "pin", art, "--class", hwclass)
            data_dir = tmp_path / f"agent-{hwclass}"
            devices[hwclass] = (enroll_agent(server, data_dir, hardware_class=hwclass), data_dir)
            agents[hwclass] = start_agent(data_dir, "--telemetry-window", "1", "--telemetry-interval", "0.5")
        for hwclass, (device_id, _) in devices.items():
            wait_for(
                lambda d=device_id, a=arts[hwclass]: (
                    (_report(server, d).get("slots") or {}).get("default", {}).get("active") == a
                ),
                timeout_s=120,
                what=f"the {hwclass} agent installing its artifact (signed, health-checked)",
            )
        endpoints = {
            hwclass: wait_for(
                lambda d=data_dir: (d / "serving-endpoint").exists() and (d / "serving-endpoint").read_text()
            )
            for hwclass, (_, data_dir) in devices.items()
        }

        x = np.random.default_rng(3).standard_normal((1, 16)).astype(np.float32)
        ov = _predict(endpoints["intel-openvino-cpu"], {"x": x.tolist()})
        assert (ov["mode"], ov["artifact_id"]) == ("preferred", arts["intel-openvino-cpu"])
        probs = np.asarray(ov["outputs"]["probs"]["data"], dtype=np.float32)
        reference = ort.InferenceSession(str(ov_source)).run(None, {"x": x})[0]
        assert probs.argmax() == reference.argmax()  # the IR answers like the source

        face = np.random.default_rng(4).uniform(-1, 1, (1, 128, 128, 3)).astype(np.float32)
        lite = _predict(endpoints["arm-litert"], {"input": face.tolist()})
        assert (lite["mode"], lite["artifact_id"]) == ("preferred", arts["arm-litert"])
        assert np.asarray(lite["outputs"]["regressors"]["data"]).shape == (1, 896, 16)

        gpu = _predict(endpoints["jetson-gpu"], {"x": x.tolist()})
        assert gpu["mode"] == "cpu"  # CUDA is absent here: served one rung down, and said so
        report = wait_for(
            lambda: (r := _report(server, devices["jetson-gpu"][0])).get("status") == "degraded" and r,
            what="the degraded report",
        )
        assert report["serving"]["reason"] == "accelerator_unavailable"
        # the runtime inventory is taken a few seconds after serving is up (docs/serving.md): wait for it
        runtimes = wait_for(
            lambda: _report(server, devices["jetson-gpu"][0]).get("runtimes"), what="the runtime inventory"
        )
        assert runtimes["onnxruntime"]["execution_providers"]
        assert "CUDAExecutionProvider" not in runtimes["onnxruntime"]["execution_providers"]
        for hwclass in ("intel-openvino-cpu", "arm-litert"):
            mine = _report(server, devices[hwclass][0])
            assert mine["status"] == "ok"
            assert mine["serving"]["mode"] == "preferred"
        ov_report = _report(server, devices["intel-openvino-cpu"][0])
        assert "openvino" in wait_for(
            lambda: _report(server, devices["intel-openvino-cpu"][0]).get("runtimes")
        )
        assert ov_report["serving"]["providers"] == ["OpenVINO:CPU"]

        for hwclass in arts:  # telemetry of each agent's requests reached the server
            wait_for(lambda h=hwclass: _requests(server, h) >= 1, timeout_s=60, what=f"{hwclass} telemetry")
        degraded = json.loads(cli(server, "device", "telemetry", devices["jetson-gpu"][0], "--json").stdout)
        assert "cpu" in json.dumps(degraded)
    finally:
        for agent in agents.values():
            agent.send_signal(signal.SIGTERM)
        for agent in agents.values():
            agent.communicate(timeout=30)
