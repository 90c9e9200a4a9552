"""Driving a real server through the real ``edgefleet`` command, for end-to-end tests."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "hardware-classes.toml"
EDGEFLEET = [sys.executable, "-m", "edgefleet.cli"]


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


def push_artifact(server, tmp_path: Path, version: str, hardware_class: str = "medical-cart-cpu") -> str:
    """A registered artifact (bytes need not be a real model for the channel's purposes)."""
    art = tmp_path / f"art-{version}-{hardware_class}"
    art.mkdir()
    files = {"model.onnx": b"model-" + version.encode(), "golden.npz": b"golden-" + version.encode()}
    for name, data in files.items():
        (art / name).write_bytes(data)
    src = hashlib.sha256(files["model.onnx"]).hexdigest()
    manifest = {
        "model": "digits",
        "version": version,
        "hardware_class": hardware_class,
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
