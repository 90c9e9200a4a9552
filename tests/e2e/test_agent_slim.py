"""The device install stays slim: ``pip install edgefleet[agent]`` names no server or build package, and a
real agent enrolls, installs a signed model, health-checks it and serves it in a process where every such
package (and the optional OpenVINO runtime) is blocked from import, as if it were not installed. The resident
``agent run`` process is blocked from python-tuf, securesystemslib, cryptography, httpx and pydantic too: TUF
work runs in its fetch child (``agent.install.child_fetcher``), a process of its own that may import them;
requests to the server go through h11 on a socket (``agent.http_transport``); the director's signature is
checked with PyNaCl; documents are read and written as the msgspec structs of ``protocol.wire``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from importlib.metadata import requires
from pathlib import Path

import httpx
import numpy as np
import pytest
from packaging.requirements import Requirement
from tests.e2e.fleet_cli import cli, push_artifact, wait_for

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "hardware-classes.toml"
NOT_ON_A_DEVICE = {
    "fastapi", "starlette", "sqlalchemy", "alembic", "uvicorn", "psycopg", "jinja2",  # the server
    "onnx", "sklearn", "skl2onnx", "tqdm",  # the build pipeline
    "openvino",  # an optional second runtime (its own extra)
}  # fmt: skip
NOT_RESIDENT = {
    "tuf",
    "securesystemslib",
    "cryptography",
    "httpx",
    "httpcore",
    "pydantic",
    "pydantic_core",
}
"""Never imported by the resident agent (its fetch child, a fresh interpreter, imports TUF). h11, httpx's
HTTP/1.1 parser, is not here: the local endpoint (``agent.serve.endpoint``) and the channel to the server
(``agent.http_transport``) speak HTTP through it."""
DISTRIBUTIONS = {"fastapi", "starlette", "sqlalchemy", "alembic", "uvicorn", "psycopg", "jinja2", "onnx",
                 "scikit-learn", "skl2onnx", "tqdm", "openvino"}  # fmt: skip

_SITECUSTOMIZE = """
import os, sys
BLOCKED = set(filter(None, os.environ.get("EDGEFLEET_TEST_BLOCKED", "").split(",")))
RESIDENT = set(filter(None, os.environ.get("EDGEFLEET_TEST_BLOCKED_RESIDENT", "").split(",")))
argv = sys.orig_argv
at = argv.index("edgefleet.cli") if "edgefleet.cli" in argv else -1
# the resident agent: `edgefleet agent run` and what it execs into; not its children
if at >= 0 and argv[at + 1 : at + 3] == ["agent", "run"]:
    BLOCKED |= RESIDENT
if "edgefleet.cli.agent_process" in argv:  # what it execs into once click has parsed the command line
    BLOCKED |= RESIDENT | {"click"}
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not installed on this device (blocked by the test)")
        return None
sys.meta_path.insert(0, Block())
"""


def _slim(tmp_path: Path, *args: str, resident: set[str] = frozenset()) -> tuple[list[str], dict[str, str]]:
    """The command and environment of a device process with ``NOT_ON_A_DEVICE`` blocked from import, in it and
    in every Python process it starts (a ``sitecustomize`` on ``PYTHONPATH``), and ``resident`` blocked in
    the resident agent: ``agent run`` and the process it execs into, not its children."""
    site = tmp_path / "blocking-site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
        "EDGEFLEET_TEST_BLOCKED": ",".join(sorted(NOT_ON_A_DEVICE)),
        "EDGEFLEET_TEST_BLOCKED_RESIDENT": ",".join(sorted(resident)),
    }
    return [sys.executable, "-m", "edgefleet.cli", *args], env


def test_the_agent_extra_names_no_server_or_build_package() -> None:
    wanted: set[str] = set()
    for line in requires("edgefleet") or []:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate({"extra": "agent"}):
            wanted.add(req.name.lower())
    assert {"tuf", "onnxruntime", "numpy"} <= wanted
    assert not wanted & DISTRIBUTIONS, wanted & DISTRIBUTIONS


def test_an_agent_without_server_or_build_packages_installs_and_serves(live_server, tmp_path: Path) -> None:
    server = live_server
    cli(server, "class", "apply", str(EXAMPLES))
    v1 = push_artifact(server, tmp_path, "1.0.0")
    cli(server, "device", "pin", v1, "--class", "medical-cart-cpu")
    token = cli(server, "device", "token", "create", "--class", "medical-cart-cpu").stdout.strip()
    data_dir = tmp_path / "device"
    command, env = _slim(
        tmp_path, "agent", "enroll", "--server", server.url, "--token", token, "--data-dir", str(data_dir)
    )
    enrolled = subprocess.run(
        command,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert enrolled.returncode == 0, enrolled.stderr
    device_id = json.loads((data_dir / "identity" / "device.json").read_text())["device_id"]
    log = tmp_path / "agent.log"
    run = ("agent", "run", "--data-dir", str(data_dir), "--poll-interval", "0.3")
    command, env = _slim(tmp_path, *run, resident=NOT_RESIDENT)
    with log.open("wb") as out:
        agent = subprocess.Popen(
            command,
            env=env,
            stdout=out,
            stderr=out,
        )
    try:

        def active() -> str | None:
            shown = json.loads(cli(server, "device", "show", device_id, "--json").stdout)
            return (((shown.get("report") or {}).get("slots") or {}).get("default") or {}).get("active")

        wait_for(lambda: active() == v1 or agent.poll() is not None, timeout_s=90, what="1.0.0 installed")
        assert agent.poll() is None, log.read_text()[-3000:]
        endpoint = wait_for(
            lambda: (data_dir / "serving-endpoint").exists() and (data_dir / "serving-endpoint").read_text(),
            what="the local serving endpoint",
        ).strip()
        x = np.linspace(0, 1, 16, dtype=np.float32).reshape(1, 16)
        answer = wait_for(
            lambda: _predict(endpoint, x),
            what="an answer from the slim agent",
        )
        assert answer["model_version"] == "digits/1.0.0"
        assert answer["artifact_id"] == v1
        assert "blocked by the test" not in log.read_text()
        # the blocks held in the process that serves: `agent run` became cli.agent_process (same pid)
        cmdline = Path(f"/proc/{agent.pid}/cmdline").read_bytes().split(b"\0")
        assert b"edgefleet.cli.agent_process" in cmdline
        assert cmdline[1:4] == [b"-OO", b"-X", b"no_debug_ranges"]  # its interpreter runs lean
        # a small model on an http control plane: no OpenSSL in the process (agent.sha256_choice)
        assert "libcrypto" not in Path(f"/proc/{agent.pid}/maps").read_text()
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=30)


def _predict(endpoint: str, x: np.ndarray) -> dict | None:
    try:
        r = httpx.post(f"{endpoint.rstrip('/')}/v1/predict", json={"inputs": {"x": x.tolist()}}, timeout=5)
    except httpx.HTTPError:
        return None
    return r.json() if r.status_code == 200 and r.json().get("artifact_id") else None
