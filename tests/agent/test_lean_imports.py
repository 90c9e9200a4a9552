"""What the agent's serving path and its sync stack import (resident memory is mostly imported code).

Each check runs in a fresh interpreter: the test process has imported everything already.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest


def _modules_after(code: str) -> set[str]:
    """The module names loaded once ``code`` has run in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_the_serving_path_does_not_load_cryptography() -> None:
    """The embedded serving API, the slot store and the installer (which the serving layer and the agent
    import before the sync stack) leave cryptography (8.6 MiB resident, measured) to the code that reads or
    writes a key."""
    loaded = _modules_after(
        "import edgefleet.agent.serve.api, edgefleet.agent.install, edgefleet.agent.datadir, "
        "edgefleet.agent.serve.source"
    )
    assert "edgefleet.agent.datadir" in loaded
    assert not {m for m in loaded if m.split(".")[0] == "cryptography"}


def test_the_device_key_still_round_trips(tmp_path) -> None:
    """The key helpers import cryptography where they need it."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from edgefleet.agent.datadir import DataDir

    ddir = DataDir(tmp_path / "data")
    key = Ed25519PrivateKey.generate()
    ddir.write_key(key)
    assert ddir.read_key().public_key().public_bytes_raw() == key.public_key().public_bytes_raw()


@pytest.mark.skipif(
    importlib.util.find_spec("rich") is None or importlib.util.find_spec("click") is None,
    reason="httpx imports its command-line client only when click and rich are installed",
)
def test_the_agent_imports_httpx_without_its_command_line_client() -> None:
    plain = _modules_after("import httpx")
    assert "rich" in plain  # httpx pulls its CLI in on its own when it can: the case the agent avoids
    lean = _modules_after("from edgefleet.agent.app import _skip_httpx_cli\n_skip_httpx_cli()\nimport httpx")
    assert "httpx" in lean
    assert not {m for m in lean if m.split(".")[0] in ("rich", "pygments")}
    assert "httpx._client" in lean  # the client itself is whole
