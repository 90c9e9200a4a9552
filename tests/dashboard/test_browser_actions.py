"""Issue 19's dashboard actions in a real browser: Debian's headless Chromium (Playwright) against a live
control plane on loopback, with enrolled devices on the signed channel. An operator clicks through creating
a rollout (a refused spec first, then the dry-run preview), pausing, resuming, promoting and aborting it,
setting and clearing a pin and creating an enrollment token, each after its confirmation page; the effects
are read back through the API and the audit log. A viewer sees none of the buttons and is refused every
action, by a forged form too, and posts without the session's CSRF token are refused; nothing changes.
An admin adds a webhook (a refused URL first), reads its generated secret once and removes it; an operator's
pin by label selector lists the matched devices before pinning them. One Chromium for the module."""

from __future__ import annotations

import re
import shutil

import pytest

from .browser import CHROMIUM, CHROMIUM_ARGS, sign_in_page
from .test_browser import live_fleet  # noqa: F401  # the live fleet fixture

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason=f"{CHROMIUM} is not installed (apt-get install chromium)"
)
SOAKING = '{"stages": [{"count": 1, "soak_s": 3600}, {"percent": 100, "soak_s": 0}]}'
ISSUE_19_ACTIONS = {
    "rollout.create",
    "rollout.pause",
    "rollout.resume",
    "rollout.promote",
    "rollout.abort",
    "pin.set",
    "pin.clear",
    "enrollment_token.create",
}


@pytest.fixture(scope="module")
def chromium_once():
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def _api(fleet, path, **params):
    r = fleet.client.get(path, params=params, headers=fleet.admin)
    assert r.status_code == 200, r.text
    return r.json()


def _confirm(page, heading: str, button: str, *, reason: str | None = None) -> None:
    expect = sync_api.expect
    expect(page.get_by_role("heading", name=heading)).to_be_visible()
    if reason is not None:
        page.get_by_label("Reason (kept in the audit log)").fill(reason)
    page.get_by_role("button", name=button, exact=True).click()


@pytest.mark.slow
def test_an_operator_clicks_through_every_action_and_each_is_audited(live_fleet, chromium_once, shots):  # noqa: F811
    fleet, expect = live_fleet, sync_api.expect
    url = fleet.url
    context = chromium_once.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    sign_in_page(page, url, fleet.operator_token("olga", "operator"))

    # Create: a spec the API refuses is refused on the form, next to the field, with the API's code.
    page.goto(f"{url}/dashboard/rollouts")
    page.get_by_role("link", name="New rollout").click()
    page.get_by_label("Model").fill("digits")
    page.get_by_label("Targets").fill(f"medical-cart-cpu={fleet.v2}")
    page.get_by_label("Devices must have these labels").fill("site=site-0")
    page.locator("#spec").fill('{"stages": [{"percent": 0}]}')
    page.get_by_role("button", name="Create rollout…").click()
    expect(page.locator("#form-error-code")).to_have_text("invalid_document")
    expect(page.locator("#err-spec")).to_contain_text("spec.stages.0.percent")
    expect(page.locator("#err-spec")).to_contain_text("greater than 0")
    expect(page.locator("#spec")).to_have_attribute("aria-invalid", "true")
    page.screenshot(path=shots / "rollout-new-refused.png", full_page=True)
    assert _api(fleet, "/v1/rollouts")["total"] == 0

    # The dry-run preview, then create from it, after confirming.
    page.locator("#spec").fill(SOAKING)
    page.get_by_role("button", name="Preview (dry run)").click()
    expect(page.locator("#plan-outcome")).to_be_visible()
    page.get_by_role("button", name="Create this rollout…").click()
    expect(page.locator("#confirm-summary")).to_contain_text("1 device(s) → 100 %")
    expect(page.locator("#confirm-summary")).to_contain_text("site=site-0")
    page.screenshot(path=shots / "rollout-new-confirm.png", full_page=True)
    assert _api(fleet, "/v1/rollouts")["total"] == 0  # asking is not doing
    page.get_by_role("button", name="Edit").click()  # back to the form, filled in
    expect(page.get_by_label("Devices must have these labels")).to_have_value("site=site-0")
    page.get_by_role("button", name="Create rollout…").click()
    _confirm(page, "Start a rollout of digits?", "Start rollout")
    expect(page.get_by_role("status")).to_contain_text("Rollout created")
    rid = page.url.split("/dashboard/rollouts/")[1].split("?")[0]
    created = _api(fleet, f"/v1/rollouts/{rid}")
    assert (created["status"], created["selector"], created["created_by"]) == (
        "running",
        {"site": "site-0"},
        "olga",
    )
    assert created["targets"]["medical-cart-cpu"] == {"from": fleet.v1, "to": fleet.v2}

    # Pause, resume, promote, abort: each asks first.
    page.get_by_role("button", name="Pause").click()
    _confirm(page, f"Pause rollout {rid}?", "Pause rollout", reason="night shift")
    expect(page.get_by_role("status")).to_contain_text("Rollout paused")
    assert _api(fleet, f"/v1/rollouts/{rid}")["status"] == "paused"
    page.get_by_role("button", name="Resume").click()
    _confirm(page, f"Resume rollout {rid}?", "Resume rollout")
    expect(page.get_by_role("status")).to_contain_text("Rollout resumed")
    assert _api(fleet, f"/v1/rollouts/{rid}")["status"] == "running"
    page.get_by_role("button", name="Promote stage 1").click()
    _confirm(page, f"Promote the current stage of rollout {rid}?", "Promote stage")
    expect(page.get_by_role("status")).to_contain_text("Current stage promoted")
    page.get_by_role("button", name="Abort…").click()
    _confirm(page, f"Abort rollout {rid}?", "Abort rollout", reason="wrong calibration set")
    expect(page.locator("#halt-reason")).to_contain_text("wrong calibration set")
    done = _api(fleet, f"/v1/rollouts/{rid}")
    assert done["status"] == "aborted"
    assert [e["kind"] for e in done["events"]] == ["created", "pause", "resume", "promote", "abort"]

    # Set a device pin, then clear it.
    identity, ddir = fleet.devices[0]
    device_id = identity.device_id
    page.goto(f"{url}/dashboard/devices/{device_id}")
    page.get_by_role("link", name="Pins of this device").click()
    page.get_by_label("Artifact id").fill(fleet.v2)
    page.get_by_role("button", name="Set pin…").click()
    _confirm(page, f"Pin device {device_id} to {fleet.v2}?", "Set pin")
    expect(page.get_by_role("status")).to_contain_text("Pin set")
    expect(page.locator(f'tr[data-pin="device:{device_id}:default"]')).to_contain_text("digits 2.0.0")
    page.screenshot(path=shots / "pins.png", full_page=True)
    pins = _api(fleet, "/v1/pins", scope="device")["items"]
    assert [(p["target"], p["artifact_id"], p["created_by"]) for p in pins] == [(device_id, fleet.v2, "olga")]
    assert fleet.poll(identity, ddir) == {"default": fleet.v2}
    page.get_by_role("button", name=f"Clear the pin of device {device_id}, slot default").click()
    _confirm(page, f"Clear the pin of device {device_id}, slot default?", "Clear pin")
    expect(page.get_by_role("status")).to_contain_text("Pin cleared")
    assert _api(fleet, "/v1/pins", scope="device")["total"] == 0
    assert fleet.poll(identity, ddir) == {"default": fleet.v1}

    # An enrollment token, shown once; a device enrolls with it.
    page.goto(f"{url}/dashboard/devices")
    page.get_by_role("link", name="New enrollment token").click()
    page.get_by_label("Hardware class").fill("medical-cart-cpu")
    page.get_by_label("Labels").fill("site=site-7\nline=2")  # two lines, carried through the confirmation
    page.get_by_role("button", name="Create token…").click()
    _confirm(page, "Create an enrollment token for medical-cart-cpu?", "Create token")
    token = page.locator("#enrollment-token").inner_text()
    assert token.startswith("efen_")
    page.screenshot(path=shots / "enrollment-token.png", full_page=True)
    new_identity, _ = fleet.enroll(token)
    assert _api(fleet, f"/v1/devices/{new_identity.device_id}")["labels"] == {"site": "site-7", "line": "2"}
    page.goto(f"{url}/dashboard/audit?actor=olga")
    expect(page.locator("main")).to_contain_text("enrollment_token.create")
    assert token not in page.content()
    page.screenshot(path=shots / "audit-actions.png", full_page=True)
    context.close()

    rows = _api(fleet, "/v1/audit", actor="olga", limit=50)["items"]
    assert {r["action"] for r in rows} == ISSUE_19_ACTIONS
    assert all(r["at"] and r["target"] for r in rows)
    targets = {r["action"]: r["target"] for r in rows}
    assert targets["rollout.pause"] == targets["rollout.abort"] == rid
    assert targets["pin.set"] == targets["pin.clear"] == f"device:{device_id}"


def test_viewers_are_refused_every_action_and_csrf_less_posts_do_nothing(live_fleet, chromium_once, shots):  # noqa: F811
    fleet, expect = live_fleet, sync_api.expect
    url = fleet.url
    rid = fleet.rollout({"stages": [{"count": 1, "soak_s": 3600}, {"percent": 100, "soak_s": 0}]})
    device_id = fleet.devices[0][0].device_id
    viewer_token, operator_token = (
        fleet.operator_token("vic", "viewer"),
        fleet.operator_token("oscar", "operator"),
    )
    audit_before = _api(fleet, "/v1/audit", limit=100)["items"]
    rollout_form = {
        "model": "digits",
        "targets": f"medical-cart-cpu={fleet.v2}",
        "spec": SOAKING,
        "slot": "other",
    }
    actions = [
        ("/dashboard/rollouts/new", rollout_form),
        *((f"/dashboard/rollouts/{rid}/{a}", {}) for a in ("pause", "resume", "promote", "abort")),
        (
            "/dashboard/pins/set",
            {"scope": "device", "target": device_id, "slot": "default", "artifact_id": fleet.v2},
        ),
        ("/dashboard/pins/clear", {"scope": "class", "target": "medical-cart-cpu", "slot": "default"}),
        (
            "/dashboard/enrollment-tokens/new",
            {"hardware_class": "medical-cart-cpu", "ttl_s": "600", "uses": "1"},
        ),
    ]
    submit = """([action, fields]) => {
        const f = document.createElement('form');
        f.method = 'post'; f.action = action;
        for (const [k, v] of Object.entries(fields)) {
            const i = document.createElement('input');
            i.type = 'hidden'; i.name = k; i.value = v; f.appendChild(i);
        }
        document.body.appendChild(f); f.submit();
    }"""

    viewer = chromium_once.new_context(viewport={"width": 1024, "height": 800})
    vpage = viewer.new_page()
    sign_in_page(vpage, url, viewer_token)
    for path in (
        "/dashboard/rollouts",
        f"/dashboard/rollouts/{rid}",
        "/dashboard/pins",
        "/dashboard/devices",
    ):
        vpage.goto(f"{url}{path}")
        for name in ("New rollout", "New enrollment token", "Pause", "Promote", "Abort…", "Set pin…"):
            expect(vpage.get_by_role("button", name=name)).to_have_count(0)
            expect(vpage.get_by_role("link", name=name)).to_have_count(0)
        expect(vpage.locator("button", has_text="Clear…")).to_have_count(0)
    vpage.goto(f"{url}/dashboard/rollouts/new")
    expect(vpage.locator("#error-code")).to_have_text("permission_denied")
    csrf = vpage.locator("form.who input[name=csrf]").get_attribute("value")
    for action, fields in actions:
        vpage.goto(f"{url}/dashboard/pins")
        vpage.evaluate(submit, [action, {**fields, "csrf": csrf, "confirm": "yes"}])
        expect(vpage.get_by_role("heading", name="Not allowed")).to_be_visible()
        expect(vpage.locator("#error-code")).to_have_text("permission_denied")
    vpage.screenshot(path=shots / "viewer-refused-action.png", full_page=True)
    viewer.close()

    operator = chromium_once.new_context()
    opage = operator.new_page()
    sign_in_page(opage, url, operator_token)
    for action, fields in actions:
        for csrf_field in ({}, {"csrf": "not-this-sessions-token"}):
            opage.goto(f"{url}/dashboard/pins")
            opage.evaluate(submit, [action, {**fields, **csrf_field, "confirm": "yes"}])
            expect(opage.locator("#error-code")).to_have_text("csrf_failed")
        r = opage.request.post(f"{url}{action}", form={**fields, "confirm": "yes"}, max_redirects=0)
        assert r.status == 403, (action, r.status)
    operator.close()

    rollout = _api(fleet, f"/v1/rollouts/{rid}")
    assert (rollout["status"], [e["kind"] for e in rollout["events"]]) == ("running", ["created"])
    assert _api(fleet, "/v1/rollouts")["total"] == 1
    pins = _api(fleet, "/v1/pins")["items"]
    assert [(p["scope"], p["target"], p["artifact_id"]) for p in pins] == [
        ("class", "medical-cart-cpu", fleet.v1)
    ]
    assert _api(fleet, "/v1/audit", limit=100)["items"] == audit_before


@pytest.mark.slow
def test_an_admin_adds_and_removes_a_webhook_and_an_operator_pins_a_selection(
    live_fleet,  # noqa: F811
    chromium_once,
    shots,
):
    fleet, expect = live_fleet, sync_api.expect
    url = fleet.url
    context = chromium_once.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    sign_in_page(page, url, fleet.operator_token("ada", "admin"))

    # A URL that is not http(s) is refused next to the field with the API's code; nothing is added.
    page.goto(f"{url}/dashboard/alerts")
    page.get_by_label("Name").fill("pager")
    page.get_by_label("URL (http or https)").fill("ftp://hooks.example/ef")
    page.get_by_role("button", name="Add webhook…").click()
    expect(page.locator("#form-error-code")).to_have_text("invalid_webhook_url")
    expect(page.locator("#err-url")).to_contain_text("http(s)")
    assert _api(fleet, "/v1/webhooks")["items"] == []
    page.get_by_label("URL (http or https)").fill("https://hooks.example/ef")
    page.locator('input[name="event-rollout.halted"]').check()
    page.get_by_role("button", name="Add webhook…").click()
    expect(page.locator("#confirm-summary")).to_contain_text("rollout.halted")
    _confirm(page, "Add webhook pager?", "Add webhook")
    secret = page.locator("#webhook-secret").inner_text()
    assert len(secret) >= 32
    page.screenshot(path=shots / "webhook-secret-once.png", full_page=True)
    page.goto(f"{url}/dashboard/alerts")
    expect(page.locator('tr[data-webhook="pager"]')).to_contain_text("https://hooks.example/ef")
    assert secret not in page.content()  # shown once, never again
    page.get_by_role("button", name="Remove webhook pager").click()
    _confirm(page, "Remove webhook pager?", "Remove webhook")
    expect(page.locator(".notice")).to_contain_text("Webhook removed")
    assert _api(fleet, "/v1/webhooks")["items"] == []

    # Pin by label selector: the confirmation says how many devices match and names them.
    site1 = sorted(identity.device_id for identity, _ in fleet.devices[1::2])
    page.goto(f"{url}/dashboard/pins")
    page.get_by_label("Label selector (e.g. site=plant-3,line!=2)").fill("site=site-1")
    page.locator("#sel-artifact").fill(fleet.v2)
    page.get_by_role("button", name="Pin matching devices…").click()
    expect(page.get_by_role("heading", name=re.compile(f"Pin {len(site1)} device"))).to_be_visible()
    for device_id in site1:
        expect(page.locator("#confirm-summary")).to_contain_text(device_id)
    page.get_by_role("button", name="Pin devices", exact=True).click()
    for device_id in site1:
        expect(page.locator(f'tr[data-pin="device:{device_id}:default"]')).to_be_visible()
    page.screenshot(path=shots / "pins-by-selector.png", full_page=True)
    context.close()

    actions = {r["action"]: r["target"] for r in _api(fleet, "/v1/audit", actor="ada", limit=50)["items"]}
    assert actions["webhook.create"] == actions["webhook.delete"]
    assert actions["pin.set"] == "selector:site=site-1"
