"""``edgefleet fleet health --version`` against a real server on loopback, with simulated devices sending
telemetry over the real signed channel: only the named version's windows are counted, whole fleet or by
label."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from tests.rollouts.live_fleet import LiveFleet, make_fleet

from .conftest import Cli

REQUESTS_PER_WINDOW = 20  # make_fleet's devices answer this many requests per window


@pytest.fixture
def world(live_server: Any) -> Iterator[LiveFleet]:
    """Four devices (site-0, site-1, site-0, site-1) on digits/1.0.0 for one window; then the first two are
    pinned to digits/2.0.0 and every device serves one more window."""
    world = make_fleet(live_server.url, live_server.admin_token, devices=4)
    for device in world.fleet.devices[:2]:
        world.client.pin(scope="device", target=device.device_id, slot="default", artifact_id=world.v2)
    world.step()
    assert [d.active for d in world.fleet.devices] == [world.v2, world.v2, world.v1, world.v1]
    yield world
    world.client.close()


def _health(cli: Cli, *args: str) -> dict[str, Any]:
    result = cli("fleet", "health", *args, "--json")
    assert result.code == 0, result.err
    return dict(json.loads(result.out))


def test_fleet_health_counts_only_the_named_version(admin_cli: Cli, world: LiveFleet) -> None:
    v2 = _health(admin_cli, "--version", "digits/2.0.0")
    assert v2["filters"]["model_version"] == "digits/2.0.0"
    assert [g["model_version"] for g in v2["by_model_version"]] == ["digits/2.0.0"]
    assert v2["totals"]["requests"] == 2 * REQUESTS_PER_WINDOW  # two devices, one window each
    assert v2["devices"]["reporting"] == 2
    [by_class] = v2["by_hardware_class"]
    assert (by_class["hardware_class"], by_class["requests"]) == ("medical-cart-cpu", 2 * REQUESTS_PER_WINDOW)

    v1 = _health(admin_cli, "--version", "digits/1.0.0")
    assert [g["model_version"] for g in v1["by_model_version"]] == ["digits/1.0.0"]
    assert v1["totals"]["requests"] == (4 + 2) * REQUESTS_PER_WINDOW  # everyone's first window, then two
    assert v1["devices"]["reporting"] == 4

    everything = _health(admin_cli)
    assert everything["totals"]["requests"] == v1["totals"]["requests"] + v2["totals"]["requests"]
    assert {g["model_version"] for g in everything["by_model_version"]} == {"digits/1.0.0", "digits/2.0.0"}

    unknown = _health(admin_cli, "--version", "digits/9.9.9")
    assert (unknown["totals"]["requests"], unknown["by_model_version"], unknown["devices"]["reporting"]) == (
        0,
        [],
        0,
    )


def test_fleet_health_version_with_a_label_selection(admin_cli: Cli, world: LiveFleet) -> None:
    site0_v2 = _health(admin_cli, "--version", "digits/2.0.0", "--label", "site=site-0")
    assert site0_v2["totals"]["requests"] == REQUESTS_PER_WINDOW  # device 0 only
    assert site0_v2["devices"]["reporting"] == 1
    assert [(g["site"], g["requests"]) for g in site0_v2["by_site"]] == [("site-0", REQUESTS_PER_WINDOW)]
    site0_v1 = _health(admin_cli, "--version", "digits/1.0.0", "--label", "site=site-0")
    assert site0_v1["totals"]["requests"] == (2 + 1) * REQUESTS_PER_WINDOW  # devices 0 and 2, then 2 again


def test_fleet_health_version_table(viewer_cli: Cli, world: LiveFleet) -> None:
    table = viewer_cli("fleet", "health", "--version", "digits/2.0.0")
    assert table.code == 0, table.err
    lines = table.out.splitlines()
    assert lines[0].split()[:4] == ["GROUP", "DEVICES", "REQUESTS", "ERROR_RATE"]
    assert [line.split()[:3] for line in lines[1:3]] == [
        ["(all)", "2", str(2 * REQUESTS_PER_WINDOW)],
        ["digits/2.0.0", "2", str(2 * REQUESTS_PER_WINDOW)],
    ]
    assert "digits/1.0.0" not in table.out
    by_class = viewer_cli("fleet", "health", "--version", "digits/2.0.0", "--by", "hardware_class")
    assert by_class.code == 0, by_class.err
    assert [line.split()[:3] for line in by_class.out.splitlines()[1:3]] == [
        ["(all)", "2", str(2 * REQUESTS_PER_WINDOW)],
        ["medical-cart-cpu", "2", str(2 * REQUESTS_PER_WINDOW)],
    ]


def test_fleet_health_and_device_telemetry_show_field_status(viewer_cli: Cli, world: LiveFleet) -> None:
    table = viewer_cli("fleet", "health")
    assert table.code == 0, table.err
    assert "INPUT_FAULTS" in table.out.splitlines()[0]
    assert "unhealthy    0 device(s) with requests but no success" in table.out
    assert "input faults 0 device(s) with a sudden rise" in table.out
    device = world.fleet.devices[0].device_id
    shown = viewer_cli("device", "telemetry", device)
    assert shown.code == 0, shown.err
    assert "field        ok" in shown.out
    assert "input faults 0 in the last 600.0 s" in shown.out
