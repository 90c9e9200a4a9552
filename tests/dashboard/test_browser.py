"""End to end in a real browser: Debian's headless Chromium (Playwright) against a real control plane on
loopback, with real enrolled devices talking the signed channel over HTTP and the server's own rollout
engine ticking on the wall clock. Screenshots of every page go to ``$EDGEFLEET_TEST_ARTIFACTS/dashboard``
(or a pytest temp folder); the path is printed."""

from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from tests.server.fleet import EXAMPLES, Fleet

from edgefleet.agent.channel import DeviceChannel
from edgefleet.agent.datadir import DataDir
from edgefleet.agent.enroll import enroll
from edgefleet.protocol import parse_classes_toml

from .browser import CHROMIUM, sign_in_page

LIVE_TIMEOUT_MS = 20_000

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason=f"{CHROMIUM} is not installed (apt-get install chromium)"
)


class WallClock:
    def __call__(self) -> datetime:
        return datetime.now(timezone.utc)


class LiveFleet(Fleet):
    """``tests.server.fleet.Fleet`` over real HTTP to a live server; the server's engine does the ticking."""

    def __init__(self, url: str, admin_token: str, tmp_path: Path) -> None:
        client = httpx.Client(base_url=url, timeout=30)
        super().__init__(None, client, {"authorization": f"Bearer {admin_token}"}, WallClock(), tmp_path)
        self.url = url

    def enroll(self, token=None, **kw):
        self.count += 1
        ddir = self.tmp / f"agent{self.count}"
        identity = enroll(server_url=self.url, token=token or self.token(), data_dir=ddir, **kw)
        return identity, DataDir(ddir)

    def channel(self, identity, ddir):
        return DeviceChannel(self.url, device_id=identity.device_id, key=ddir.read_key())

    def rollout(self, spec) -> str:
        body = {"model": "digits", "targets": {"medical-cart-cpu": self.v2}, "spec": spec}
        r = self.client.post("/v1/rollouts", json=body, headers=self.admin)
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def step(self, *, latency_ms: float) -> int:
        """Every device polls; those told to run v2 install it and serve a window of traffic."""
        exposed = 0
        for identity, ddir in self.devices:
            target = self.poll(identity, ddir).get("default")
            self.report(identity, ddir, active=target)
            if target == self.v2:
                exposed += 1
                self.serve(identity, ddir, self.v2, requests=40, latency_ms=latency_ms)
        return exposed

    def operator_token(self, name: str, role: str) -> str:
        r = self.client.post("/v1/tokens", json={"name": name, "role": role}, headers=self.admin)
        assert r.status_code == 201, r.text
        return r.json()["token"]


TWO_STAGES = {
    "stages": [
        {"count": 1, "soak_s": 0, "gates": {"min_requests": 10}},
        {"percent": 100, "soak_s": 600, "gates": {"min_requests": 10}},  # soaks: only a breach ends it
    ]
}


@pytest.fixture
def live_fleet(live_server_factory, tmp_path):
    server = live_server_factory(rollout_tick_s=0.3)
    fleet = LiveFleet(server.url, server.admin_token, tmp_path)
    classes = [c.to_dict() for c in parse_classes_toml(EXAMPLES.read_text())]
    assert (
        fleet.client.post("/v1/classes/apply", json={"classes": classes}, headers=fleet.admin).status_code
        == 200
    )
    fleet.v1, fleet.v2 = fleet.artifact("1.0.0"), fleet.artifact("2.0.0")
    r = fleet.client.put(
        "/v1/pins/class/medical-cart-cpu/default", json={"artifact_id": fleet.v1}, headers=fleet.admin
    )
    assert r.status_code == 204
    fleet.devices = [fleet.enroll(fleet.token(labels={"site": f"site-{i % 2}"})) for i in range(4)]
    for identity, ddir in fleet.devices:
        assert fleet.poll(identity, ddir) == {"default": fleet.v1}
        fleet.report(identity, ddir, active=fleet.v1)
        fleet.serve(identity, ddir, fleet.v1, requests=50, latency_ms=10)
    yield fleet
    fleet.client.close()


def test_operators_watch_a_rollout_halt_abort_another_and_viewers_are_refused(live_fleet, chromium, shots):
    fleet, expect = live_fleet, sync_api.expect
    url = fleet.url
    operator = chromium.new_context(viewport={"width": 1366, "height": 900})
    page = operator.new_page()

    page.goto(f"{url}/dashboard/login")
    page.screenshot(path=shots / "login.png")
    sign_in_page(page, url, fleet.operator_token("olive", "operator"))
    expect(page.locator("#versions-data")).to_have_count(1)
    expect(page.locator(".chart canvas").first).to_be_visible()  # uPlot drew the versions chart
    page.screenshot(path=shots / "overview.png", full_page=True)

    # Watch a rollout progress and halt, without reloading the page.
    rid = fleet.rollout(TWO_STAGES)
    page.goto(f"{url}/dashboard/rollouts/{rid}")
    expect(page.locator("#stage-label")).to_have_text("stage 1 of 2")
    page.screenshot(path=shots / "rollout-running.png", full_page=True)
    assert fleet.step(latency_ms=10) >= 1  # the engine may advance while the devices take their turns
    expect(page.locator("#stage-label")).to_have_text("stage 2 of 2", timeout=LIVE_TIMEOUT_MS)
    # Three times slower than v1 on the same devices: the engine halts as soon as the first slow window lands.
    assert fleet.step(latency_ms=30) >= 1
    halt = page.locator("#halt-reason")
    expect(halt).to_contain_text("latency_p95_ratio", timeout=LIVE_TIMEOUT_MS)
    expect(halt).to_contain_text("threshold of 1.5")
    expect(page.locator('tr[data-gate="latency_p95_ratio"]')).to_contain_text("breach")
    assert fleet.client.get(f"/v1/rollouts/{rid}", headers=fleet.admin).json()["status"] == "halted"
    fleet.step(latency_ms=10)  # devices poll and go back to v1
    page.reload()
    expect(page.get_by_role("heading", name="Rollback")).to_be_visible()
    page.screenshot(path=shots / "rollout-halted.png", full_page=True)

    # Abort another rollout as an operator: the destructive action asks first.
    rid2 = fleet.rollout({"stages": [{"count": 1, "soak_s": 3600}, {"percent": 100, "soak_s": 0}]})
    page.goto(f"{url}/dashboard/rollouts/{rid2}")
    page.get_by_role("button", name="Abort…").click()
    expect(page.get_by_role("heading", name=f"Abort rollout {rid2}?")).to_be_visible()
    page.get_by_label("Reason (kept in the audit log)").fill("wrong calibration set")
    page.screenshot(path=shots / "confirm-abort.png", full_page=True)
    page.get_by_role("button", name="Abort rollout").click()
    expect(page.get_by_role("status")).to_contain_text("Rollout aborted")
    expect(page.locator("#halt-reason")).to_contain_text("wrong calibration set")
    assert fleet.client.get(f"/v1/rollouts/{rid2}", headers=fleet.admin).json()["status"] == "aborted"
    page.screenshot(path=shots / "rollout-aborted.png", full_page=True)

    # The other pages, keyboard reachable from the navigation.
    page.goto(f"{url}/dashboard/rollouts")
    page.screenshot(path=shots / "rollouts.png", full_page=True)
    page.goto(f"{url}/dashboard/devices")
    page.screenshot(path=shots / "devices.png", full_page=True)
    device_id = fleet.devices[0][0].device_id
    page.goto(f"{url}/dashboard/devices/{device_id}")
    expect(page.locator("[data-series='p95_ms'] canvas")).to_be_visible()
    page.screenshot(path=shots / "device.png", full_page=True)
    page.goto(f"{url}/dashboard/models")
    page.screenshot(path=shots / "models.png", full_page=True)
    page.goto(f"{url}/dashboard/artifacts/{fleet.v2}")
    page.screenshot(path=shots / "artifact.png", full_page=True)
    page.goto(f"{url}/dashboard/fleet/health")
    page.screenshot(path=shots / "fleet-health.png", full_page=True)
    page.goto(f"{url}/dashboard/audit")
    expect(page.locator("main")).to_contain_text("rollout.abort")
    page.screenshot(path=shots / "audit.png", full_page=True)
    page.keyboard.press("Tab")
    expect(page.locator(".skip")).to_be_focused()
    operator.close()

    # A viewer sees the same rollout page without actions, and is refused the action if it forges it.
    rid3 = fleet.rollout({"stages": [{"count": 1, "soak_s": 3600}, {"percent": 100, "soak_s": 0}]})
    viewer = chromium.new_context(viewport={"width": 820, "height": 1180})  # a tablet
    vpage = viewer.new_page()
    sign_in_page(vpage, url, fleet.operator_token("vic", "viewer"))
    vpage.screenshot(path=shots / "overview-tablet.png", full_page=True)
    vpage.goto(f"{url}/dashboard/rollouts/{rid3}")
    expect(vpage.get_by_role("button", name="Abort…")).to_have_count(0)
    expect(vpage.locator("main")).to_contain_text("actions need the operator role")
    vpage.screenshot(path=shots / "rollout-viewer-tablet.png", full_page=True)
    csrf = vpage.locator("form.who input[name=csrf]").get_attribute("value")
    vpage.evaluate(
        """([action, csrf]) => {
            const f = document.createElement('form');
            f.method = 'post'; f.action = action;
            for (const [k, v] of [['csrf', csrf], ['confirm', 'yes']]) {
                const i = document.createElement('input');
                i.type = 'hidden'; i.name = k; i.value = v; f.appendChild(i);
            }
            document.body.appendChild(f); f.submit();
        }""",
        [f"/dashboard/rollouts/{rid3}/abort", csrf],
    )
    expect(vpage.get_by_role("heading", name="Not allowed")).to_be_visible()
    expect(vpage.locator("#error-code")).to_have_text("permission_denied")
    vpage.screenshot(path=shots / "viewer-refused.png", full_page=True)
    assert fleet.client.get(f"/v1/rollouts/{rid3}", headers=fleet.admin).json()["status"] == "running"
    viewer.close()
    written = {
        "login",
        "overview",
        "rollout-running",
        "rollout-halted",
        "confirm-abort",
        "rollout-aborted",
        "rollouts",
        "devices",
        "device",
        "models",
        "artifact",
        "audit",
        "overview-tablet",
        "rollout-viewer-tablet",
        "viewer-refused",
        "fleet-health",
    }
    assert {f"{name}.png" for name in written} <= {p.name for p in shots.glob("*.png")}


def test_operators_plan_a_rollout_in_the_browser(live_fleet, chromium, shots):
    """The dry run from the dashboard's form, in Chromium: the twin's outcome, gates and plots on the page."""
    fleet, expect = live_fleet, sync_api.expect
    context = chromium.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    sign_in_page(page, fleet.url, fleet.operator_token("pia", "operator"))
    page.goto(f"{fleet.url}/dashboard/rollouts")
    page.get_by_role("link", name="Plan a rollout (dry run)").click()
    expect(page.get_by_role("heading", name="Plan a rollout")).to_be_visible()
    page.get_by_label("Model").fill("digits")
    page.get_by_label("Targets").fill(f"medical-cart-cpu={fleet.v2}")
    page.get_by_role("button", name="Run the dry run").click()
    expect(page.locator("#plan-outcome")).to_have_text("completed")
    expect(page.locator("svg.twin-plot").first).to_be_visible()
    expect(page.locator("#plan-notes")).to_contain_text("poll interval")
    page.screenshot(path=shots / "plan-rollout.png", full_page=True)
    page.locator("#spec").fill('{"stages": [{"percent": 0}]}')
    page.get_by_role("button", name="Run the dry run").click()
    expect(page.locator("#plan-error")).to_contain_text("invalid_document")
    expect(page.locator("#plan-error")).to_contain_text("spec.stages.0.percent")
    context.close()
    assert fleet.client.get("/v1/rollouts", headers=fleet.admin).json()["total"] == 0
