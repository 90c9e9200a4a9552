"""The dashboard's alerts page: webhooks without their secrets, and the delivery log of a real receiver."""

from __future__ import annotations

import pytest
from tests.alert_receiver import SECRET, Receiver
from tests.dashboard.conftest import browser, make_token, sign_in

from edgefleet.server.services.alerts.dispatcher import HttpxSender, dispatch_due
from edgefleet.server.services.alerts.rules import RetryPolicy


@pytest.fixture
def receiver(world):
    r = Receiver(clock=world[0].clock)
    yield r
    r.close()


def test_a_viewer_reads_the_delivery_log_and_never_a_secret(world, receiver):
    fleet, _v1, v2, _devices = world
    r = fleet.client.post(
        "/v1/webhooks",
        json={"name": "pager", "url": receiver.url, "secret": SECRET, "events": ["artifact.disabled"]},
        headers=fleet.admin,
    )
    assert r.status_code == 201, r.text
    fleet.client.patch(f"/v1/artifacts/{v2}", json={"disabled": True, "reason": "bad"}, headers=fleet.admin)
    sender = HttpxSender(timeout_s=5)
    try:
        with fleet.app.state.context.db.session() as session:
            dispatch_due(session, now=fleet.clock(), sender=sender, policy=RetryPolicy())
    finally:
        sender.close()
    viewer = browser(fleet)
    sign_in(viewer, make_token(fleet, "viewer", "victor"))
    page = viewer.get("/dashboard/alerts")
    assert page.status_code == 200
    assert "pager" in page.text
    assert receiver.url in page.text
    assert SECRET not in page.text
    assert 'class="delivery-delivered"' in page.text
    assert f'href="/dashboard/artifacts/{v2}"' in page.text
    filtered = viewer.get("/dashboard/alerts", params={"status": "gave_up"})
    assert "No delivery yet." in filtered.text
    bad = viewer.get("/dashboard/alerts", params={"status": "lost"})
    assert bad.status_code == 422
    assert "invalid_query" in bad.text
