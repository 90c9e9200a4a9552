"""Device lifecycle in a real browser (Debian's headless Chromium, Playwright) against a live control plane:
an operator relabels a device and decommissions another from the device page (each after a confirmation),
filters the fleet by a label selector and by inventory; a viewer sees no such buttons and a forged post is
refused. Screenshots go where ``tests/dashboard/test_browser.py`` puts them."""

from __future__ import annotations

import shutil

import pytest
from tests.server.fleet import EXAMPLES

from edgefleet.protocol import parse_classes_toml

from .browser import CHROMIUM, sign_in_page

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason=f"{CHROMIUM} is not installed (apt-get install chromium)"
)

HOST = {"os": "linux", "os_version": "Ubuntu 22.04", "cpu": {"model": "Orin", "arch": "aarch64", "cores": 8}}


@pytest.fixture
def live_fleet(live_server_factory, tmp_path):
    from .test_browser import LiveFleet

    server = live_server_factory()
    fleet = LiveFleet(server.url, server.admin_token, tmp_path)
    classes = [c.to_dict() for c in parse_classes_toml(EXAMPLES.read_text())]
    r = fleet.client.post("/v1/classes/apply", json={"classes": classes}, headers=fleet.admin)
    assert r.status_code == 200
    fleet.devices = [fleet.enroll(fleet.token(labels={"site": "plant-3"})) for _ in range(2)]
    identity, ddir = fleet.devices[0]
    body = {"sequence": 1, "boot_id": "b", "reported_at": fleet.clock().isoformat(), "host": HOST}
    fleet.channel(identity, ddir).request("POST", "/v1/device/report", json_body=body)
    yield fleet
    fleet.client.close()


def _forge_post(page, action: str, fields: dict[str, str]) -> None:
    page.evaluate(
        """([action, fields]) => {
            const f = document.createElement('form');
            f.method = 'post'; f.action = action;
            for (const [k, v] of Object.entries(fields)) {
                const i = document.createElement('input');
                i.type = 'hidden'; i.name = k; i.value = v; f.appendChild(i);
            }
            document.body.appendChild(f); f.submit();
        }""",
        [action, fields],
    )


def test_operators_relabel_filter_and_decommission_devices(live_fleet, chromium, shots):
    fleet, expect = live_fleet, sync_api.expect
    url = fleet.url
    (first, _), (second, _) = fleet.devices
    context = chromium.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    sign_in_page(page, url, fleet.operator_token("olive", "operator"))

    # The device page shows the reported inventory; relabel asks first, showing before and after.
    page.goto(f"{url}/dashboard/devices/{first.device_id}")
    expect(page.locator("main")).to_contain_text("Orin (aarch64, 8 cores)")
    page.get_by_label("Set labels").fill("line=2, zone=north")
    page.get_by_role("button", name="Relabel…").click()
    expect(page.get_by_role("heading", name=f"Relabel device {first.device_id}?")).to_be_visible()
    expect(page.locator("#confirm-summary")).to_contain_text("line=2, site=plant-3, zone=north")
    page.screenshot(path=shots / "confirm-relabel.png", full_page=True)
    page.get_by_role("button", name="Relabel device").click()
    expect(page.get_by_role("status")).to_contain_text("Labels changed")
    expect(page.locator("main")).to_contain_text("line=2")
    device = fleet.client.get(f"/v1/devices/{first.device_id}", headers=fleet.admin).json()
    assert device["labels"] == {"site": "plant-3", "line": "2", "zone": "north"}

    # The fleet page filters by a label selector and by inventory.
    page.goto(f"{url}/dashboard/devices")
    page.get_by_label("Labels").fill("site=plant-3,line!=2")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("main table tbody tr")).to_have_count(1)
    expect(page.locator("main table tbody")).to_contain_text(second.device_id)
    page.goto(f"{url}/dashboard/devices?arch=aarch64")
    expect(page.locator("main table tbody tr")).to_have_count(1)
    expect(page.locator("main table tbody")).to_contain_text(first.device_id)
    expect(page.locator("main table tbody")).to_contain_text("linux/aarch64")
    page.screenshot(path=shots / "devices-filtered.png", full_page=True)
    page.goto(f"{url}/dashboard/devices?selector=site%3D")
    expect(page.locator("#error-code")).to_have_text("invalid_selector")

    # Decommission asks first; the device then leaves the fleet views and stays in the audit.
    page.goto(f"{url}/dashboard/devices/{second.device_id}")
    page.get_by_role("button", name="Decommission…").click()
    expect(page.get_by_role("heading", name=f"Decommission device {second.device_id}?")).to_be_visible()
    page.get_by_label("Reason (kept in the audit log)").fill("replaced by a new unit")
    page.get_by_role("button", name="Decommission device").click()
    expect(page.get_by_role("status")).to_contain_text("Device decommissioned")
    expect(page.get_by_role("button", name="Decommission…")).to_have_count(0)
    page.screenshot(path=shots / "device-decommissioned.png", full_page=True)
    page.goto(f"{url}/dashboard/devices")
    expect(page.locator("main table tbody")).not_to_contain_text(second.device_id)
    page.goto(f"{url}/dashboard/audit")
    expect(page.locator("main")).to_contain_text("device.decommission")
    expect(page.locator("main")).to_contain_text("device.relabel")
    context.close()

    # A viewer sees neither button, and a forged relabel is refused without a change.
    viewer = chromium.new_context()
    vpage = viewer.new_page()
    sign_in_page(vpage, url, fleet.operator_token("vic", "viewer"))
    vpage.goto(f"{url}/dashboard/devices/{first.device_id}")
    expect(vpage.get_by_role("button", name="Relabel…")).to_have_count(0)
    expect(vpage.get_by_role("button", name="Decommission…")).to_have_count(0)
    csrf = vpage.locator("form.who input[name=csrf]").get_attribute("value")
    _forge_post(
        vpage, f"/dashboard/devices/{first.device_id}/relabel", {"csrf": csrf, "confirm": "yes", "set": "a=b"}
    )
    expect(vpage.locator("#error-code")).to_have_text("permission_denied")
    viewer.close()
    assert "a" not in fleet.client.get(f"/v1/devices/{first.device_id}", headers=fleet.admin).json()["labels"]
