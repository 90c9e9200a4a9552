"""Driving a real server through the real ``edgefleet`` command, for end-to-end tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

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


def push_artifact(
    server,
    tmp_path: Path,
    version: str,
    hardware_class: str = "medical-cart-cpu",
    *,
    model_bytes: bytes | None = None,
    publish: bool = True,
    release_counter: int | None = None,
    latency_ceiling_ms: float = 500.0,
) -> str:
    """A real artifact (a tiny ONNX classifier + golden vectors), registered and, unless ``publish=False``,
    signed with the server's (dev) release key into its TUF repository. Returns the artifact id; the
    directory is ``tmp_path / f"art-{version}-{hardware_class}"``."""
    from tests.agent.crash.artifacts import classifier, write_artifact

    art = tmp_path / f"art-{version}-{hardware_class}"
    counter = release_counter if release_counter is not None else int(version.split(".")[0])
    model = model_bytes if model_bytes is not None else classifier(seed=counter)
    manifest = write_artifact(
        tmp_path,
        art.name,
        model,
        version=version,
        release_counter=counter,
        latency_ceiling_ms=latency_ceiling_ms,
    ).to_dict()
    manifest["hardware_class"] = hardware_class
    (art / "manifest.json").write_text(json.dumps(manifest))
    cli(server, "model", "create", "digits", check=False)
    cli(server, "model", "version", "add", "digits", version, str(art / "model.onnx"), check=False)
    artifact_id = json.loads(cli(server, "artifact", "push", str(art), "--json").stdout)["id"]
    if publish:
        cli(server, "publish", str(art), "--release-key", str(server.data_dir / "keys" / "release.key"))
    return artifact_id


def enroll_agent(
    server,
    data_dir: Path,
    *,
    hardware_class: str = "medical-cart-cpu",
    server_url: str | None = None,
    labels: tuple[str, ...] = (),
) -> str:
    """Create a one-time token and enroll ``data_dir`` with it, as an operator and a device would."""
    token_args = ["device", "token", "create", "--class", hardware_class]
    for label in labels:
        token_args += ["--label", label]
    token = cli(server, *token_args).stdout.strip()
    url = server_url or server.url
    out = cli(
        server, "agent", "enroll", "--server", url, "--token", token, "--data-dir", str(data_dir), "--json"
    )
    return json.loads(out.stdout)["device_id"]


def agent_command(data_dir: Path, *args: str) -> list[str]:
    """``edgefleet agent run`` on ``data_dir`` with ``args``."""
    return [*EDGEFLEET, "agent", "run", "--data-dir", str(data_dir), *args]


def run_agent(data_dir: Path, *args: str) -> subprocess.Popen[bytes]:
    """``edgefleet agent run`` in a subprocess (output discarded); stop it with SIGTERM."""
    return subprocess.Popen(
        agent_command(data_dir, *args),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def create_rollout(server, target: str, *options: str, hardware_class: str = "medical-cart-cpu") -> str:
    """``edgefleet rollout create`` of the digits model to ``target`` on one class; returns the rollout id."""
    created = cli(
        server,
        "rollout",
        "create",
        "--model",
        "digits",
        "--target",
        f"{hardware_class}={target}",
        *options,
        "--json",
    )
    return str(json.loads(created.stdout)["id"])


def one_agent_on_v1(
    server, tmp_path: Path, *agent_args: str
) -> tuple[str, Path, str, subprocess.Popen[bytes]]:
    """The example classes applied, digits 1.0.0 pinned to ``medical-cart-cpu``, one enrolled agent running
    with ``agent_args``: (the 1.0.0 artifact id, its data dir, its device id, its process)."""
    cli(server, "class", "apply", str(EXAMPLES))
    v1 = push_artifact(server, tmp_path, "1.0.0")
    cli(server, "device", "pin", v1, "--class", "medical-cart-cpu")
    data_dir = tmp_path / "agent"
    device_id = enroll_agent(server, data_dir)
    return v1, data_dir, device_id, run_agent(data_dir, *agent_args)


def active_artifact(server, device_id: str, slot: str = "default") -> str | None:
    """The artifact the device reports active in ``slot``."""
    report = json.loads(cli(server, "device", "show", device_id, "--json").stdout).get("report") or {}
    return ((report.get("slots") or {}).get(slot) or {}).get("active")


def device_document(server, device_id: str) -> dict:
    """The device as the API shows it (a direct GET: cheaper to poll than a CLI process)."""
    response = httpx.get(f"{server.url}/v1/devices/{device_id}", headers=server.admin_headers, timeout=10)
    response.raise_for_status()
    return dict(response.json())


def reported_active(server, device_id: str, slot: str = "default") -> str | None:
    """The artifact the device reports active in ``slot``, read over HTTP (see ``device_document``)."""
    slots = (device_document(server, device_id).get("report") or {}).get("slots") or {}
    return (slots.get(slot) or {}).get("active")
