"""What the agent's serving path and its sync stack import (resident memory is mostly imported code).

Each check runs in a fresh interpreter: the test process has imported everything already.
"""

from __future__ import annotations

import gzip
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
    """The key cryptography writes at enrollment is read back (without it) as the same key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from edgefleet.agent.datadir import DataDir

    ddir = DataDir(tmp_path / "data")
    key = Ed25519PrivateKey.generate()
    ddir.write_key(key)
    assert ddir.read_key().public_key().public_bytes_raw() == key.public_key().public_bytes_raw()


def test_signing_and_the_director_key_do_not_load_cryptography(tmp_path) -> None:
    """The resident agent's own Ed25519 (request signing, the director's signature, a rotation's pin) runs on
    PyNaCl: cryptography's Rust extension (~9.4 MiB resident, measured) stays out of ``agent run``."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from edgefleet.agent.datadir import DataDir, DeviceIdentity
    from edgefleet.trust.director import public_key_pem, sign_desired_state

    ddir = DataDir(tmp_path / "data")
    ddir.write_key(Ed25519PrivateKey.generate())
    director = Ed25519PrivateKey.generate()
    pem = public_key_pem(director.public_key())
    ddir.write_identity(DeviceIdentity("dev_a", "http://127.0.0.1:9", "cpu", pem), None)
    state = {"device_id": "dev_a", "hardware_class": "cpu", "generation": 1}
    state |= {"issued_at": "2026-12-06T00:00:00+00:00", "expires_at": "2026-12-13T00:00:00+00:00"}
    from edgefleet.protocol.desired_state import DesiredState

    ddir.write_desired_envelope(sign_desired_state(DesiredState.parse(state), director))
    loaded = _modules_after(
        "import edgefleet.agent.channel, edgefleet.agent.sync\n"
        "from datetime import datetime, timezone\n"
        "from edgefleet.agent.datadir import DataDir\n"
        "from edgefleet.protocol.request_signing import sign_request\n"
        "from edgefleet.trust.director import ed25519_keyid, public_key_pem, verify_desired_state\n"
        f"ddir = DataDir({str(ddir.root)!r})\n"
        "key = ddir.read_identity().director_key\n"
        "sign_request(ddir.read_key(), device_id='dev_a', method='GET', path='/', body=b'', now_s=0.0)\n"
        "verify_desired_state(ddir.read_desired_envelope(), director_key=key, device_id='dev_a',\n"
        "    last_generation=0, now=datetime(2026, 12, 7, tzinfo=timezone.utc), time_floor=None)\n"
        "assert public_key_pem(key) and ed25519_keyid(key)\n"
    )
    assert {"edgefleet.agent.sync", "edgefleet.agent.channel", "nacl.signing"} <= loaded
    assert not {m for m in loaded if m.split(".")[0] == "cryptography"}


@pytest.mark.skipif(
    importlib.util.find_spec("rich") is None or importlib.util.find_spec("click") is None,
    reason="httpx imports its command-line client only when click and rich are installed",
)
def test_the_agent_imports_httpx_without_its_command_line_client() -> None:
    plain = _modules_after("import httpx")
    assert "rich" in plain  # httpx pulls its CLI in on its own when it can: the case the agent avoids
    lean = _modules_after(
        "from edgefleet.agent.channel import skip_httpx_cli\nskip_httpx_cli()\nimport httpx"
    )
    assert "httpx" in lean
    assert not {m for m in lean if m.split(".")[0] in ("rich", "pygments")}
    assert "httpx._client" in lean  # the client itself is whole


def test_agent_run_does_not_load_pydantic() -> None:
    """``agent run`` (its command, the agent and every loop it starts) reads and writes documents as the
    msgspec structs of ``protocol.wire``: pydantic and the models built with it held ~17 MiB of the resident
    agent."""
    loaded = _modules_after(
        "import edgefleet.cli.main, edgefleet.cli.agent_cmd, edgefleet.agent.app, edgefleet.agent.sync, "
        "edgefleet.agent.install.installer, edgefleet.agent.probe.runner, "
        "edgefleet.agent.telemetry.uploader, edgefleet.agent.serve.endpoint, edgefleet.trust.director"
    )
    assert "edgefleet.protocol.wire.desired_state" in loaded
    assert not {m for m in loaded if m.split(".")[0] in ("pydantic", "pydantic_core")}


def test_what_only_some_agents_need_is_imported_when_needed() -> None:
    """``gzip`` (~0.2 MiB; zlib writes the upload's gzip), ``zoneinfo`` (~0.3 MiB with sysconfig; loaded for
    a named time zone) and ``concurrent.futures`` (~0.5 MiB; loaded when a shadow candidate starts) stay out
    of an agent that does not use them, and arrive when it does."""
    agent = (
        "import edgefleet.cli.agent_process, edgefleet.agent.app, edgefleet.agent.sync, "
        "edgefleet.agent.telemetry.uploader, edgefleet.agent.serve.shadow, edgefleet.protocol.update_window"
    )
    loaded = _modules_after(agent)
    assert "edgefleet.agent.serve.shadow" in loaded
    assert not loaded & {"gzip", "zoneinfo", "concurrent.futures"}
    used = _modules_after(
        f"{agent}\nfrom edgefleet.protocol.update_window import check_zone\ncheck_zone('Europe/Berlin')\n"
        "from edgefleet.agent.serve.shadow import ShadowConfig, ShadowEvaluator\n"
        "ShadowEvaluator(object(), '2', 'y', ShadowConfig(sample_fraction=0.5)).close()\n"
    )
    assert {"zoneinfo", "concurrent.futures"} <= used


def test_the_local_endpoint_does_not_load_the_stdlib_http_server() -> None:
    """The endpoint speaks HTTP through h11: ``http.server`` would bring ``http.client`` (with ``ssl``),
    ``email``, ``html`` and ``mimetypes`` into the resident agent (~1-2.5 MiB, measured)."""
    loaded = _modules_after("import edgefleet.agent.serve.endpoint")
    assert {"edgefleet.agent.serve.endpoint", "h11"} <= loaded
    heavy = {"http.server", "http.client", "email", "html", "mimetypes", "ssl"}
    assert not {m for m in loaded if m in heavy or m.split(".")[0] in ("email", "html")}


def test_a_request_over_http_loads_no_stdlib_http_email_ssl_or_idna() -> None:
    """The channel's transport is h11 on a socket: ``http.client`` (with ``email``), ``urllib.request``
    (~1 MiB: tempfile, shutil, bz2, lzma), ``ssl`` (for an ``http://`` server with no proxy) and the ``idna``
    codec (``unicodedata``, for a host name that is ASCII) stay out; the server's ``Date`` is read too."""
    body = gzip.compress(b"{}")
    answer = b"HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Encoding: gzip\r\n"
    answer += b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    loaded = _modules_after(
        "import os, socket, threading\n"
        "for name in [k for k in os.environ if k.lower().endswith('_proxy')]:\n"
        "    del os.environ[name]  # no proxy: the case where ssl stays out\n"
        "import edgefleet.agent.channel as channel\n"
        "from edgefleet.trust.ed25519 import Ed25519Signer\n"
        "server = socket.create_server(('127.0.0.1', 0))\n"
        "def serve():\n"
        "    conn, _ = server.accept()\n"
        "    with conn:\n"
        "        conn.recv(65536)\n"
        f"        conn.sendall({answer!r})\n"
        "threading.Thread(target=serve, daemon=True).start()\n"
        "url = f'http://localhost:{server.getsockname()[1]}'\n"
        "key = Ed25519Signer(bytes(32))\n"
        "c = channel.DeviceChannel(url, device_id='dev_' + '1' * 20, key=key, timeout_s=5)\n"
        "assert c.request('GET', '/v1/poll').json() == {}\n"
        "assert c.clock_offset_s < -1e9  # the 1994 Date was read\n"
    )
    assert {"edgefleet.agent.channel", "h11"} <= loaded
    assert not loaded & {"http.client", "urllib.request", "email", "ssl", "encodings.idna", "unicodedata"}
