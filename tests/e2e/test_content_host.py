"""Content off the API, end to end: ``edgefleet tuf export`` writes the image repository as plain files, a
separate plain static file server (``python -m http.server``) serves them, and a real ``agent run`` enrolled
with the server's ``content_base_url`` fetches every TUF metadata file and target there, while the API
serves only the control path (it sees no ``/tuf/`` request at all)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time

import pytest
from tests.e2e.fleet_cli import (
    EXAMPLES,
    agent_command,
    cli,
    device_document,
    enroll_agent,
    push_artifact,
    reported_active,
    wait_for,
)

from edgefleet.server.api import tuf as tuf_api

pytestmark = pytest.mark.slow


@pytest.fixture
def static_host(tmp_path):
    """A plain static file server on a free loopback port serving `tmp_path / "cdn"`: (url, dir, log)."""
    root = tmp_path / "cdn"
    root.mkdir()
    log = tmp_path / "static.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", str(root)],
            stdout=out,
            stderr=out,
        )
    try:
        port = wait_for(
            lambda: (m := re.search(r"port (\d+)", log.read_text())) and int(m.group(1)),
            what="the static server listening",
        )
        yield f"http://127.0.0.1:{port}", root, log
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def api_content_requests(monkeypatch):
    """Every request the API answers from its image repository (``/tuf/...``), recorded."""
    seen: list[str] = []
    real = tuf_api._repo

    def recording(request):
        if request.url.path.startswith("/tuf/"):
            seen.append(request.url.path)
        return real(request)

    monkeypatch.setattr(tuf_api, "_repo", recording)
    return seen


def test_an_agent_takes_its_content_from_a_static_host_and_the_api_serves_only_control(
    live_server_factory, static_host, api_content_requests, tmp_path
):
    base_url, root, static_log = static_host
    server = live_server_factory(content_base_url=base_url)
    cli(server, "class", "apply", str(EXAMPLES))
    v1 = push_artifact(server, tmp_path, "1.0.0")
    cli(server, "device", "pin", v1, "--class", "medical-cart-cpu")
    exported = json.loads(cli(server, "tuf", "export", str(root), "--json").stdout)
    assert exported["targets_version"] == 1
    assert exported["written"][-1] == "metadata/timestamp.json"  # last: all it names is in place
    api_content_requests.clear()  # the export itself read the API's /tuf: that is the operator's copy

    data_dir = tmp_path / "agent"
    device_id = enroll_agent(server, data_dir)
    identity = json.loads((data_dir / "identity" / "device.json").read_text())
    assert identity["content_url"] == base_url  # handed out at enrollment
    log = tmp_path / "agent.log"
    with log.open("wb") as out:
        agent = subprocess.Popen(
            agent_command(data_dir, "--poll-interval", "0.5", "--backoff-cap", "1", "--no-hints"),
            stdout=out,
            stderr=out,
        )
    try:
        wait_for(
            lambda: reported_active(server, device_id) == v1, timeout_s=120, what="install from the host"
        )
        # 2.0.0 is published to the API's repository but not exported yet: the device cannot see it.
        v2 = push_artifact(server, tmp_path, "2.0.0")
        cli(server, "device", "pin", v2, "--device", device_id)
        wait_for(
            lambda: "target_not_in_tuf" in json.dumps(device_document(server, device_id)),
            timeout_s=120,
            what="the device reporting the unexported target as not in TUF",
        )
        assert reported_active(server, device_id) == v1
        second = json.loads(cli(server, "tuf", "export", str(root), "--json").stdout)
        assert second["kept"] > 0  # incremental: the files of 1.0.0 and the old metadata stay as they were
        assert not any(p.startswith("targets/digits/1.0.0/") for p in second["written"])
        api_content_requests.clear()
        wait_for(lambda: reported_active(server, device_id) == v2, timeout_s=120, what="install of 2.0.0")
        time.sleep(1.0)  # a few more polls
    except AssertionError:
        print(log.read_text()[-6000:])
        raise
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=30)
    assert agent.returncode == 0
    assert api_content_requests == []  # the API served no metadata and no target to the device
    served = static_log.read_text()
    assert re.search(r'"GET /metadata/timestamp\.json HTTP', served)
    assert re.search(r'"GET /metadata/\d+\.snapshot\.json HTTP', served)
    assert re.search(r'"GET /targets/digits/2\.0\.0/medical-cart-cpu/[0-9a-f]{64}\.model\.onnx HTTP', served)
    # The exported tree is the layout python-tuf reads with consistent snapshots.
    assert (root / "metadata" / "1.root.json").is_file()
    assert (root / "metadata" / "root.json").read_bytes() == (root / "metadata" / "1.root.json").read_bytes()
    assert (root / "metadata" / "2.targets.json").is_file()
    assert list(root.glob("targets/digits/1.0.0/medical-cart-cpu/*.manifest.json"))
