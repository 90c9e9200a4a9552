"""``edgefleet device relabel|decommission|pin-selection``, ``device list`` filters and ``audit list`` against
a real server on loopback with enrolled devices."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from edgefleet.agent.channel import DeviceChannel
from edgefleet.agent.datadir import DataDir
from edgefleet.agent.enroll import enroll
from edgefleet.cli.exit_codes import ExitCode
from edgefleet.client import EdgefleetClient
from edgefleet.protocol import parse_classes_toml
from edgefleet.sim.artifacts import register_stand_in_artifact

from .conftest import EXAMPLE_CLASSES, Cli

CART = "medical-cart-cpu"


@pytest.fixture
def fleet(live_server: Any, tmp_path: Path) -> tuple[Cli, dict[str, str], str]:
    with EdgefleetClient(live_server.url, live_server.admin_token) as admin:
        admin.apply_classes(parse_classes_toml(EXAMPLE_CLASSES.read_text()))
        artifact_id = register_stand_in_artifact(admin, model="digits", version="1.0.0", hardware_class=CART)
        ids = {}
        for name, labels in (
            ("a", {"site": "plant-3", "line": "1"}),
            ("b", {"site": "plant-3", "line": "2"}),
        ):
            token = admin.create_enrollment_token(CART, labels=labels).token
            ids[name] = enroll(server_url=live_server.url, token=token, data_dir=tmp_path / name).device_id
        report = {
            "sequence": 1,
            "boot_id": "boot",
            "reported_at": datetime.now(timezone.utc).isoformat(),
            "agent_version": "0.1.0",
            "host": {"os": "linux", "cpu": {"model": "Cortex-A78AE", "arch": "aarch64", "cores": 8}},
            "runtimes": {
                "onnxruntime": {"version": "1.20.1", "execution_providers": ["CPUExecutionProvider"]}
            },
        }
        channel = DeviceChannel(live_server.url, device_id=ids["a"], key=DataDir(tmp_path / "a").read_key())
        try:
            channel.request("POST", "/v1/device/report", json_body=report)
        finally:
            channel.close()
    return Cli(live_server, live_server.admin_token), ids, artifact_id


def _json(result) -> Any:
    assert result.code == 0, result.err
    return json.loads(result.out)


def test_relabel_one_and_by_selector(fleet):
    cli, ids, _ = fleet
    one = _json(cli("device", "relabel", ids["a"], "--set", "zone=north", "--json"))
    assert one["labels"] == {"site": "plant-3", "line": "1", "zone": "north"}
    preview = _json(
        cli("device", "relabel", "--selector", "site=plant-3", "--remove", "line", "--dry-run", "--json")
    )
    assert preview["matched"] == 2
    assert preview["dry_run"] is True
    listed = _json(cli("device", "list", "--selector", "line", "--json"))
    assert listed["total"] == 2  # the dry run changed nothing
    done = cli("device", "relabel", "--selector", "site=plant-3,line!=1", "--set", "line=3", "--yes")
    assert done.code == 0, done.err
    assert ids["b"] in done.out
    assert "1 matched, 1 changed" in done.err
    assert [
        d["id"] for d in _json(cli("device", "list", "--selector", "line in (3)", "--json"))["items"]
    ] == [ids["b"]]
    empty = cli("device", "relabel", "--selector", "site=plant-9", "--set", "a=b", "--yes")
    assert empty.code == ExitCode.INVALID_INPUT
    assert "selector_matches_nothing" in empty.err
    bad = cli("device", "relabel", "--selector", "site=,", "--set", "a=b", "--yes")
    assert "invalid_selector" in bad.err


def test_list_filters_by_inventory_and_show_prints_it(fleet):
    cli, ids, _ = fleet
    assert [d["id"] for d in _json(cli("device", "list", "--arch", "aarch64", "--json"))["items"]] == [
        ids["a"]
    ]
    assert [
        d["id"] for d in _json(cli("device", "list", "--runtime", "onnxruntime=1.20.1", "--json"))["items"]
    ] == [ids["a"]]
    assert _json(cli("device", "list", "--os", "windows", "--json"))["total"] == 0
    shown = cli("device", "show", ids["a"])
    assert "Cortex-A78AE (aarch64, 8 cores)" in shown.out
    assert "onnxruntime 1.20.1" in shown.out


def test_decommission_hides_the_device_and_audit_list_shows_it(fleet):
    cli, ids, artifact_id = fleet
    info = _json(cli("device", "decommission", ids["b"], "--reason", "replaced", "--yes", "--json"))
    assert info["decommissioned_at"]
    assert info["status"] == "revoked"
    assert [d["id"] for d in _json(cli("device", "list", "--json"))["items"]] == [ids["a"]]
    both = _json(cli("device", "list", "--decommissioned", "--json"))
    assert {d["id"] for d in both["items"]} == set(ids.values())

    pinned = _json(cli("device", "pin-selection", artifact_id, "--selector", "site=plant-3", "--json"))
    assert pinned["devices"] == [ids["a"]]  # the decommissioned device is never selected

    rows = _json(cli("audit", "list", "--action", "device.*", "--json"))["items"]
    assert [(r["action"], r["target"]) for r in rows] == [
        ("device.decommission", ids["b"]),
        ("device.enroll", ids["b"]),
        ("device.enroll", ids["a"]),
    ]  # newest first, a family of actions
    rows = _json(cli("audit", "list", "--action", "device.decommission", "--json"))["items"]
    assert rows[0]["details"]["reason"] == "replaced"
    assert _json(cli("audit", "list", "--target", ids["b"], "--json"))["total"] == 2  # enroll, decommission
    future = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    assert _json(cli("audit", "list", "--since", future, "--json"))["total"] == 0
    table = cli("audit", "list", "--actor", "bootstrap-admin", "--limit", "1")
    assert table.out.splitlines()[0].split() == ["AT", "ACTOR", "ACTION", "TARGET", "DETAILS"]
    assert "use --offset 1 for more" in table.out
    backwards = cli("audit", "list", "--since", future, "--until", "2020-01-01T00:00:00Z")
    assert backwards.code == ExitCode.INVALID_INPUT
    assert "invalid_time_range" in backwards.err


def test_a_viewer_cannot_relabel_or_decommission(fleet, viewer_cli):
    _, ids, _ = fleet
    for args in (
        ("device", "relabel", ids["a"], "--set", "a=b"),
        ("device", "decommission", ids["a"], "--yes"),
    ):
        refused = viewer_cli(*args)
        assert refused.code == ExitCode.AUTH, refused.err


def test_an_audit_action_filter_that_can_never_match_is_refused_naming_the_families(fleet):
    cli, _, _ = fleet
    for action in ("*", "device", "dev.*", "Device.enroll"):
        result = cli("audit", "list", "--action", action, "--json")
        assert result.code == ExitCode.INVALID_INPUT, action
        error = json.loads(result.out)["error"]
        assert error["code"] == "invalid_audit_action"
        assert error["details"]["got"] == action
        assert "device.*" in error["details"]["expected"]
        assert "rollout" in error["details"]["expected"]  # the families the platform records
    assert _json(cli("audit", "list", "--action", "device.*", "--json"))["total"] == 2
    assert _json(cli("audit", "list", "--action", "device.no_such_thing", "--json"))["total"] == 0


def test_configuration_for_a_decommissioned_device_is_refused(fleet):
    cli, ids, _ = fleet
    assert cli("config", "set", "--device", ids["b"], "log_level=debug").code == 0
    assert cli("device", "decommission", ids["b"], "--yes").code == 0
    result = cli("config", "set", "--device", ids["b"], "log_level=info")
    assert result.code == ExitCode.INVALID_INPUT
    assert "error [device_decommissioned]" in result.err
    assert f"got:      {ids['b']}" in result.err
    assert cli("config", "unset", "--device", ids["b"]).code == 0  # what it had may still be cleared


def test_clearing_pins_of_an_unknown_class_says_the_class_is_not_found(fleet):
    cli, _, _ = fleet
    result = cli("device", "pin-selection", "--clear", "--class", "nope", "--selector", "site=plant-3")
    assert result.code == ExitCode.NOT_FOUND
    assert "error [class_not_found]" in result.err
    assert "got:      nope" in result.err
    nothing = cli("device", "pin-selection", "--clear", "--class", CART, "--selector", "site=plant-9")
    assert "error [selector_matches_nothing]" in nothing.err  # a known class still says what it says
