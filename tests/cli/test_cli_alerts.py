"""``edgefleet alert`` against a live server whose own background dispatcher delivers to a real receiver
on loopback (it fails once, then recovers), with ``--json`` everywhere and bad input refused."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from tests.alert_receiver import SECRET, Receiver
from tests.cli.conftest import Cli


@pytest.fixture
def receiver():
    r = Receiver(fail_first=1)
    yield r
    r.close()


def _deliveries(cli: Cli, *args: str) -> list[dict[str, Any]]:
    out = cli("alert", "deliveries", "--json", *args)
    assert out.code == 0, out.err
    return json.loads(out.out)["items"]


def test_webhook_add_test_and_delivery_log(
    live_server_factory: Any, receiver: Receiver, tmp_path: Path
) -> None:
    server = live_server_factory(alert_dispatch_s=0.2)
    cli = Cli(server, server.admin_token)
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    added = cli(
        "alert",
        "webhook",
        "add",
        "--name",
        "ops",
        "--url",
        receiver.url,
        "--secret-file",
        str(secret_file),
        "--json",
    )
    assert added.code == 0, added.err
    hook = json.loads(added.out)
    assert SECRET not in added.out
    listed = cli("alert", "webhook", "list", "--json")
    assert [h["id"] for h in json.loads(listed.out)["items"]] == [hook["id"]]
    queued = cli("alert", "webhook", "test", hook["id"], "--json")
    assert queued.code == 0, queued.err
    # The server's dispatcher sends it outside the request: 503 first, then (after the backoff) 204.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not _deliveries(cli, "--status", "delivered"):
        time.sleep(0.5)
    (delivered,) = _deliveries(cli, "--status", "delivered")
    assert (delivered["attempts"], delivered["event"]["kind"]) == (2, "test")
    assert [r["verified"] for r in receiver.received] == [True, True]
    table = cli("alert", "deliveries")
    assert "delivered" in table.out
    assert "test" in table.out


def test_bad_webhooks_through_the_cli(admin_cli: Cli, viewer_cli: Cli) -> None:
    bad = admin_cli("alert", "webhook", "add", "--name", "ops", "--url", "ftp://example.com/x", "--json")
    assert bad.code == 5
    assert "invalid_webhook_url" in bad.err
    refused = viewer_cli("alert", "webhook", "add", "--name", "ops", "--url", "https://example.com/x")
    assert refused.code == 4
    assert "permission_denied" in refused.err
    assert json.loads(admin_cli("alert", "webhook", "list", "--json").out)["items"] == []
    wrong_id = admin_cli("alert", "webhook", "remove", "nope")
    assert wrong_id.code != 0
    assert "invalid_webhook_id" in wrong_id.err
