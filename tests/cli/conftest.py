"""CLI fixtures: a real server on loopback (``live_server`` from tests/conftest.py), tokens, artifacts."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from click.testing import CliRunner

from edgefleet.cli.main import cli
from edgefleet.client import EdgefleetClient

ROOT = Path(__file__).parents[2]
EXAMPLE_CLASSES = ROOT / "examples" / "hardware-classes.toml"
CONSOLE_SCRIPT = Path(sys.executable).parent / "edgefleet"


def _demo_artifact_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("demo_artifact", ROOT / "scripts" / "demo_artifact.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclasses.dataclass
class Result:
    code: int
    out: str
    err: str


@dataclasses.dataclass
class Cli:
    """Runs ``edgefleet`` against one live server, in process (CliRunner) or as the console script."""

    server: Any  # LiveServer
    token: str | None

    def __call__(self, *args: str, token: str | None = "default") -> Result:
        result = CliRunner().invoke(cli, self._global(token) + list(args), catch_exceptions=False)
        return Result(result.exit_code, result.stdout, result.stderr)

    def script(self, *args: str, token: str | None = "default") -> Result:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFLEET_")}
        proc = subprocess.run(
            [str(CONSOLE_SCRIPT), *self._global(token), *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def _global(self, token: str | None) -> list[str]:
        secret = self.token if token == "default" else token
        return ["--server", self.server.url] + (["--token", secret] if secret else [])


@pytest.fixture
def admin_cli(live_server: Any) -> Cli:
    return Cli(live_server, live_server.admin_token)


@pytest.fixture
def operator_cli(live_server: Any) -> Cli:
    with EdgefleetClient(live_server.url, live_server.admin_token) as admin:
        token = admin.create_token("ci-operator", "operator").token
    return Cli(live_server, token)


@pytest.fixture
def viewer_cli(live_server: Any) -> Cli:
    with EdgefleetClient(live_server.url, live_server.admin_token) as admin:
        token = admin.create_token("ci-viewer", "viewer").token
    return Cli(live_server, token)


@pytest.fixture
def demo_artifact(tmp_path: Path) -> Any:
    """``make(hardware_class=..., version=...) -> (artifact_dir, source_file)``: a tiny real ONNX artifact."""
    module = _demo_artifact_module()

    def make(hardware_class: str = "medical-cart-cpu", version: str = "1.0.0") -> tuple[Path, Path]:
        out = tmp_path / f"artifact-{hardware_class}-{version}"
        source = module.write_demo_artifact(
            out, hardware_class=hardware_class, model="demo-linear", version=version
        )
        return out, source

    return make
