"""The device page's read-only view of remote configuration (desired vs applied) and the update window."""

from __future__ import annotations

from tests.dashboard.conftest import browser, make_token, sign_in


def test_the_device_page_shows_desired_vs_applied_configuration_and_the_window(world):
    fleet, _v1, _v2, devices = world
    identity, ddir = devices[0]
    body = {"scope": "device", "target": identity.device_id, "settings": {"poll_interval_s": 5}}
    assert fleet.client.put("/v1/config", json=body, headers=fleet.admin).status_code == 200
    body = {"scope": "class", "target": "medical-cart-cpu", "settings": {"log_level": "debug"}}
    assert fleet.client.put("/v1/config", json=body, headers=fleet.admin).status_code == 200
    viewer = browser(fleet)
    sign_in(viewer, make_token(fleet, "viewer"))
    page = viewer.get(f"/dashboard/devices/{identity.device_id}").text
    assert "Configuration and update window" in page
    assert "not in sync" in page  # the device has not applied it yet
    assert f"device:{identity.device_id}" in page
    assert "class:medical-cart-cpu" in page
    assert "<code>any</code> in UTC (no zone reported)" in page
    # the device reports what it applied, and its zone
    fleet.reports = getattr(fleet, "reports", 0) + 1
    report = {
        "sequence": fleet.reports,
        "boot_id": "boot-" + identity.device_id,
        "reported_at": fleet.clock().isoformat(),
        "slots": {},
        "timezone": "Europe/Berlin",
        "config": {
            "generation": 2,
            "applied": {"log_level": "debug", "poll_interval_s": 5.0},
            "restart_needed": [],
            "refused": {},
        },
    }
    fleet.channel(identity, ddir).request("POST", "/v1/device/report", json_body=report)
    page = viewer.get(f"/dashboard/devices/{identity.device_id}").text
    assert "applied as desired" in page
    assert "in Europe/Berlin" in page
    section = page.split("Configuration and update window", 1)[1].split("</section>", 1)[0]
    assert "<form" not in section  # read only: the forms are the dashboard actions' business
