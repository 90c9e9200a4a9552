"""``edgefleet device list|revoke|pin|rollback`` against a real server on loopback, enrolled devices."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

import pytest
from tests.conftest import run_live_server

from edgefleet.agent.channel import DeviceChannel
from edgefleet.agent.datadir import DataDir
from edgefleet.agent.enroll import enroll
from edgefleet.cli.exit_codes import ExitCode
from edgefleet.client import EdgefleetClient
from edgefleet.protocol import parse_classes_toml
from edgefleet.sim.artifacts import register_stand_in_artifact

from .conftest import EXAMPLE_CLASSES, Cli

# The server's device_stale_after_s and device_offline_after_s: silent this long is offline. A loaded CI host
# can take seconds between a touch and the listing after it; 2 s made "online" flaky there.
SILENT_S = 5.0
FLUSH_S = 0.1
CART, DETECTOR = "medical-cart-cpu", "intel-lowpower-detector"


LISTED = ["--label", "group=listing"]  # the listing tests' devices; other tests enroll their own


@dataclass
class Fleet:
    cli: Cli
    ids: dict[str, str]
    """name -> device id: ``cart_online`` (polls before every listing), ``cart_silent``, ``detector_silent``,
    ``cart_revoked``; all labelled ``group=listing``."""
    touch: Callable[[], None]
    artifact_id: str
    enroll: Callable[[str], str]
    """``enroll(name)``: another device (class ``medical-cart-cpu``, label ``group=other``)."""


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("cli-devices")
    with run_live_server(
        root / "server",
        device_stale_after_s=SILENT_S,
        device_offline_after_s=SILENT_S,
        last_seen_flush_s=FLUSH_S,
    ) as server:
        with EdgefleetClient(server.url, server.admin_token) as admin:
            admin.apply_classes(parse_classes_toml(EXAMPLE_CLASSES.read_text()))
            artifact_id = register_stand_in_artifact(
                admin, model="digits", version="1.0.0", hardware_class=CART
            )
            ids: dict[str, str] = {}
            for name, hardware_class in (
                ("cart_online", CART),
                ("cart_silent", CART),
                ("detector_silent", DETECTOR),
                ("cart_revoked", CART),
            ):
                token = admin.create_enrollment_token(hardware_class, labels={"group": "listing"}).token
                ids[name] = enroll(server_url=server.url, token=token, data_dir=root / name).device_id
            admin.revoke_device(ids["cart_revoked"], reason="stolen")
        time.sleep(SILENT_S + 0.2)  # everyone is offline now; cart_online comes back before each listing
        channel = DeviceChannel(
            server.url, device_id=ids["cart_online"], key=DataDir(root / "cart_online").read_key()
        )

        def touch() -> None:
            """A contact the listing shows: the server writes noted last-seen times every FLUSH_S."""
            channel.request("GET", "/v1/device/desired-state")
            time.sleep(FLUSH_S * 4)

        def enroll_other(name: str) -> str:
            with EdgefleetClient(server.url, server.admin_token) as admin:
                token = admin.create_enrollment_token(CART, labels={"group": "other"}).token
            return enroll(server_url=server.url, token=token, data_dir=root / name).device_id

        try:
            yield Fleet(Cli(server, server.admin_token), ids, touch, artifact_id, enroll_other)
        finally:
            channel.close()


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ([], {"cart_online", "cart_silent", "detector_silent", "cart_revoked"}),
        (["--class", CART], {"cart_online", "cart_silent", "cart_revoked"}),
        (["--class", DETECTOR], {"detector_silent"}),
        (["--status", "online"], {"cart_online"}),
        (["--status", "offline"], {"cart_silent", "detector_silent"}),
        (["--status", "revoked"], {"cart_revoked"}),
        (["--status", "stale"], set()),
        (["--class", CART, "--status", "offline"], {"cart_silent"}),
        (["--class", DETECTOR, "--status", "online"], set()),
    ],
)
def test_device_list_filters_by_class_and_status(fleet: Fleet, filters: list[str], expected: set[str]):
    fleet.touch()
    listed = fleet.cli("device", "list", *LISTED, *filters, "--json")
    assert listed.code == 0, listed.err
    page = json.loads(listed.out)
    names = {name for name, device_id in fleet.ids.items() if device_id in {d["id"] for d in page["items"]}}
    assert names == expected
    assert page["total"] == len(expected)
    for item in page["items"]:
        if "--class" in filters:
            assert item["hardware_class"] == filters[filters.index("--class") + 1]
        if "--status" in filters:
            assert item["status"] == filters[filters.index("--status") + 1]


def test_device_list_table_shows_the_filtered_devices(fleet: Fleet):
    fleet.touch()
    table = fleet.cli("device", "list", *LISTED, "--class", CART, "--status", "online")
    assert table.code == 0, table.err
    header, *rows = table.out.splitlines()
    assert header.split()[:3] == ["ID", "CLASS", "STATUS"]
    assert [r.split()[:3] for r in rows] == [[fleet.ids["cart_online"], CART, "online"]]


def test_device_list_refuses_an_unknown_status(fleet: Fleet):
    bad = fleet.cli("device", "list", "--status", "asleep")
    assert bad.code == ExitCode.USAGE
    assert bad.out == ""


def test_device_revoke_json(fleet: Fleet):
    target = fleet.enroll("to-revoke")
    revoked = fleet.cli("device", "revoke", target, "--reason", "decommissioned", "--yes", "--json")
    assert revoked.code == 0, revoked.err
    info = json.loads(revoked.out)  # stdout is the JSON document and nothing else
    assert (info["id"], info["status"], info["revoked_reason"]) == (target, "revoked", "decommissioned")
    assert info["revoked_at"]
    text = fleet.cli("device", "revoke", target, "--yes")
    assert text.code == 0, text.err  # revoking again is idempotent
    assert text.out.startswith(f"{target} revoked at ")
    missing = fleet.cli("device", "revoke", "dev_" + "0" * 20, "--yes", "--json")
    assert missing.code == ExitCode.NOT_FOUND
    assert json.loads(missing.out)["error"]["code"] == "device_not_found"  # --json: the error as JSON
    assert "error [device_not_found]" in missing.err


def test_device_pin_json(fleet: Fleet):
    pinned = fleet.cli("device", "pin", fleet.artifact_id, "--class", CART, "--json")
    assert pinned.code == 0, pinned.err
    assert json.loads(pinned.out) == {
        "scope": "class",
        "target": CART,
        "slot": "default",
        "artifact_id": fleet.artifact_id,
        "pinned": True,
    }
    device_id = fleet.enroll("to-pin")
    assert fleet.cli("device", "pin", fleet.artifact_id, "--device", device_id).code == 0
    cleared = fleet.cli("device", "pin", "--clear", "--device", device_id, "--json")
    assert cleared.code == 0, cleared.err
    assert json.loads(cleared.out) == {
        "scope": "device",
        "target": device_id,
        "slot": "default",
        "artifact_id": None,
        "pinned": False,
    }
    text = fleet.cli("device", "pin", fleet.artifact_id, "--class", CART)
    assert text.out.strip() == f"class {CART} slot default: pinned {fleet.artifact_id}"
    assert fleet.cli("device", "pin", fleet.artifact_id, "--device", device_id).code == 0
    listed = fleet.cli("device", "pins", "--json")
    assert listed.code == 0, listed.err
    assert [(p["scope"], p["target"], p["artifact_id"]) for p in json.loads(listed.out)["items"]] == [
        ("class", CART, fleet.artifact_id),
        ("device", device_id, fleet.artifact_id),
    ]
    only = json.loads(fleet.cli("device", "pins", "--device", device_id, "--json").out)
    assert (only["total"], only["items"][0]["target"]) == (1, device_id)
    table = fleet.cli("device", "pins", "--class", CART).out.splitlines()
    assert table[0].split() == ["SCOPE", "TARGET", "SLOT", "ARTIFACT", "SET_AT", "BY"]
    assert table[1].split()[:4] == ["class", CART, "default", fleet.artifact_id]
    both = fleet.cli("device", "pins", "--class", CART, "--device", device_id)
    assert both.code != 0


def test_device_rollback_pins_the_reported_previous_version(fleet: Fleet, tmp_path):
    server = fleet.cli.server
    with EdgefleetClient(server.url, server.admin_token) as admin:
        newer = register_stand_in_artifact(admin, model="digits", version="9.0.0", hardware_class=CART)
        token = admin.create_enrollment_token(CART, labels={"group": "rollback"}).token
        viewer = admin.create_token("rollback-viewer", "viewer").token
    device_id = enroll(server_url=server.url, token=token, data_dir=tmp_path / "rb").device_id
    channel = DeviceChannel(server.url, device_id=device_id, key=DataDir(tmp_path / "rb").read_key())

    def report(sequence: int, slot: dict) -> None:
        body = {"sequence": sequence, "boot_id": "b1", "reported_at": _now(), "slots": {"default": slot}}
        channel.request("POST", "/v1/device/report", json_body=body)

    def desired() -> dict[str, str]:
        envelope = channel.request("GET", "/v1/device/desired-state").json()
        return {slot: a["artifact_id"] for slot, a in envelope["signed"]["slots"].items()}

    try:
        refused = fleet.cli("device", "rollback", device_id, "--json")
        assert refused.code == ExitCode.CONFLICT
        assert json.loads(refused.out)["error"]["code"] == "no_previous_version"
        assert "error [no_previous_version]" in refused.err
        assert "expected: a report naming slots.default.previous" in refused.err
        assert "got:      no report from the device yet" in refused.err

        report(1, {"active": newer, "previous": fleet.artifact_id, "state": "idle"})
        before = desired()
        assert fleet.cli("device", "rollback", device_id, token=viewer).code == ExitCode.AUTH
        assert desired() == before  # a viewer changed nothing
        rolled = fleet.cli("device", "rollback", device_id, "--json")
        assert rolled.code == 0, rolled.err
        assert json.loads(rolled.out) == {
            "scope": "device",
            "target": device_id,
            "slot": "default",
            "artifact_id": fleet.artifact_id,
            "pinned": True,
            "rolled_back_from": newer,
        }
        assert desired() == {"default": fleet.artifact_id}  # what the device is told at its next poll
        text = fleet.cli("device", "rollback", device_id)
        assert text.code == 0, text.err
        assert text.out.strip() == (
            f"device {device_id} slot default: pinned {fleet.artifact_id} (rolled back from {newer})"
        )
        assert f"edgefleet device pin --clear --device {device_id}" in text.err
        with EdgefleetClient(server.url, server.admin_token) as admin:
            audited = admin.list_audit(action="device.rollback", target=device_id).items
        assert [a.details["artifact_id"] for a in audited] == [fleet.artifact_id, fleet.artifact_id]
        missing = fleet.cli("device", "rollback", "dev_" + "0" * 20)
        assert missing.code == ExitCode.NOT_FOUND
        assert "error [device_not_found]" in missing.err
    finally:
        channel.close()


def test_device_show_and_list_say_which_slots_are_behind_and_why(fleet: Fleet, tmp_path):
    server = fleet.cli.server
    with EdgefleetClient(server.url, server.admin_token) as admin:
        token = admin.create_enrollment_token(CART, labels={"group": "behind"}).token
    device_id = enroll(server_url=server.url, token=token, data_dir=tmp_path / "bh").device_id
    channel = DeviceChannel(server.url, device_id=device_id, key=DataDir(tmp_path / "bh").read_key())
    slot = {
        "active": fleet.artifact_id,
        "desired": "art_newer",
        "state": "failed:download_failed",
        "behind": "failed:download_failed",
        "retrying": True,
    }
    body = {
        "sequence": 1,
        "boot_id": "b1",
        "reported_at": _now(),
        "status": "updating",
        "slots": {"default": slot},
    }
    try:
        channel.request("POST", "/v1/device/report", json_body=body)
        shown = fleet.cli("device", "show", device_id)
        assert shown.code == 0, shown.err
        assert "reported_status      updating" in shown.out
        assert "behind default       desired=art_newer why=failed:download_failed (retrying)" in shown.out
        as_json = json.loads(fleet.cli("device", "show", device_id, "--json").out)
        assert as_json["behind"] == [
            {
                "slot": "default",
                "desired": "art_newer",
                "active": fleet.artifact_id,
                "why": "failed:download_failed",
                "retrying": True,
            }
        ]
        table = fleet.cli("device", "list", "--label", "group=behind")
        assert table.code == 0, table.err
        header, row = table.out.splitlines()
        assert header.split()[-1] == "UPDATE"
        assert row.startswith(device_id)
        assert row.rstrip().endswith("default: failed:download_failed (retrying)")
        channel.request(
            "POST", "/v1/device/report", json_body={**body, "sequence": 2, "status": "ok", "slots": {}}
        )
        _header, row = fleet.cli("device", "list", "--label", "group=behind").out.splitlines()
        assert row.rstrip().endswith(" -")
    finally:
        channel.close()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()
