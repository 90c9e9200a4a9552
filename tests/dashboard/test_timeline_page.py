"""The device timeline page: its charts with data tables, its connectivity and install tables, and bad input
(a refused range on the page with its code, an unknown device a 404)."""

from __future__ import annotations

from .conftest import browser, make_token, sign_in


def test_the_timeline_page_draws_the_device_and_refuses_bad_input(world):
    fleet, _v1, _v2, devices = world
    identity, _ddir = devices[0]
    client = browser(fleet)
    sign_in(client, make_token(fleet, "viewer"))
    device_page = client.get(f"/dashboard/devices/{identity.device_id}").text
    assert f"/dashboard/devices/{identity.device_id}/timeline" in device_page
    page = client.get(f"/dashboard/devices/{identity.device_id}/timeline", params={"range": "hour"})
    assert page.status_code == 200, page.text
    assert "Data table: Requests by version" in page.text
    assert "digits/1.0.0" in page.text
    assert "Connectivity: silent periods and buffered windows" in page.text
    assert "Last successful inference" in page.text or "last successful inference" in page.text
    bad = client.get(
        f"/dashboard/devices/{identity.device_id}/timeline",
        params={"range": "custom", "start": "2030-01-02T00:00", "end": "2030-01-01T00:00"},
    )
    assert bad.status_code == 422
    assert "history_range_inverted" in bad.text
    assert "<svg" not in bad.text
    assert client.get("/dashboard/devices/dev_00000000000000000000/timeline").status_code == 404
