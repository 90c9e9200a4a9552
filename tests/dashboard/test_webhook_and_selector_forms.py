"""Adding and removing alert webhooks, and pinning by label selector, from the dashboard through the real
ASGI app: the API's roles (webhooks: admin), CSRF, a confirmation before anything is done, the API's codes
next to the fields, the webhook secret shown once (generated) or never (typed), and audit rows. Refused posts
change nothing."""

from __future__ import annotations

import html as htmlmod
import re

import pytest
from tests.dashboard.conftest import browser, csrf_of, make_token, sign_in

from edgefleet.server.services.alerts import webhooks

TYPED_SECRET = "typed-secret-0123456789abcdef"


def _signed_in(world, role: str, name: str):
    client = browser(world[0])
    sign_in(client, make_token(world[0], role, name))
    return client


@pytest.fixture
def admin(world):
    return _signed_in(world, "admin", "ada")


def _post(client, path, **fields):
    page = client.get("/dashboard/alerts").text
    return client.post(path, data={"csrf": csrf_of(page), **fields}, follow_redirects=False)


def _hidden(page: str) -> dict[str, str]:
    found = re.findall(r'<input type="hidden" name="([a-z_.-]+)" value="([^"]*)"', page)
    return {k: htmlmod.unescape(v) for k, v in found}


def _field_error(page: str, field: str) -> str:
    start = page.find(f'id="err-{field}"')
    assert start != -1, f"no error shown next to {field}"
    return htmlmod.unescape(page[start : page.find("</div>", start)])


def _hooks(fleet) -> list[dict]:
    r = fleet.client.get("/v1/webhooks", headers=fleet.admin)
    assert r.status_code == 200, r.text
    return r.json()["items"]


def _audit(fleet, action: str) -> list[dict]:
    r = fleet.client.get("/v1/audit", params={"action": action}, headers=fleet.admin)
    return r.json()["items"]


def _selection_audit(fleet) -> list[dict]:
    return [a for a in _audit(fleet, "pin.set") if a["target"].startswith("selector:")]


def _device_pins(fleet) -> list[tuple[str, str]]:
    items = fleet.client.get("/v1/pins", headers=fleet.admin).json()["items"]
    return sorted((p["target"], p["artifact_id"]) for p in items if p["scope"] == "device")


def test_an_admin_adds_a_webhook_sees_its_generated_secret_once_and_removes_it(world, admin):
    fleet = world[0]
    page = admin.get("/dashboard/alerts").text
    assert 'action="/dashboard/webhooks/new"' in page
    fields = {"name": "pager", "url": "https://hooks.example/ef", "event-rollout.halted": "on"}
    asked = _post(admin, "/dashboard/webhooks/new", **fields)
    assert (asked.status_code, "Add webhook pager?" in asked.text) == (200, True)
    assert "rollout.halted" in asked.text
    assert "generated" in asked.text
    assert _hooks(fleet) == []  # asking is not doing
    created = admin.post("/dashboard/webhooks/new", data=_hidden(asked.text), follow_redirects=False)
    assert created.status_code == 200, created.text[:300]
    assert created.headers["cache-control"] == "no-store"
    secret = htmlmod.unescape(re.search(r'<code id="webhook-secret">([^<]+)</code>', created.text)[1])
    (hook,) = _hooks(fleet)
    assert (hook["name"], hook["url"], hook["events"]) == ("pager", fields["url"], ["rollout.halted"])
    with fleet.app.state.context.db.session() as session:
        (row,) = webhooks.list_webhooks(session)
    assert row.secret == secret  # the one the receiver will verify against
    assert secret not in admin.get("/dashboard/alerts").text  # shown once, never again
    (audited,) = _audit(fleet, "webhook.create")
    assert (audited["actor"], audited["target"]) == ("ada", hook["id"])

    remove = f"/dashboard/webhooks/{hook['id']}/remove"
    asked = _post(admin, remove)
    assert "Remove webhook pager?" in asked.text
    assert fields["url"] in asked.text
    assert len(_hooks(fleet)) == 1
    done = admin.post(remove, data=_hidden(asked.text), follow_redirects=False)
    assert (done.status_code, done.headers["location"]) == (303, "/dashboard/alerts?done=webhook_remove")
    assert _hooks(fleet) == []
    assert [a["target"] for a in _audit(fleet, "webhook.delete")] == [hook["id"]]


def test_a_typed_secret_is_kept_and_never_echoed(world, admin):
    fleet = world[0]
    asked = _post(
        admin, "/dashboard/webhooks/new", name="typed", url="http://127.0.0.1:9/x", secret=TYPED_SECRET
    )
    assert asked.status_code == 200
    assert TYPED_SECRET not in asked.text  # carried sealed, not in clear
    carried = _hidden(asked.text)
    assert "secret" not in carried
    assert carried["sealed_secret"]
    other = _signed_in(world, "admin", "abe")  # another session cannot open it
    refused = _post(other, "/dashboard/webhooks/new", **{k: v for k, v in carried.items() if k != "csrf"})
    assert "invalid_webhook_secret" in _field_error(refused.text, "secret")
    assert _hooks(fleet) == []
    created = admin.post("/dashboard/webhooks/new", data=carried, follow_redirects=False)
    assert created.status_code == 200
    assert TYPED_SECRET not in created.text
    assert 'id="webhook-secret"' not in created.text
    with fleet.app.state.context.db.session() as session:
        (row,) = webhooks.list_webhooks(session)
    assert row.secret == TYPED_SECRET


def test_refused_webhook_forms_show_the_apis_code_and_change_nothing(world, admin):
    fleet = world[0]
    good = {"name": "pager", "url": "https://hooks.example/ef"}
    for fields, field, code in (
        ({**good, "url": "ftp://hooks.example/ef"}, "url", "invalid_webhook_url"),
        ({**good, "url": "https://user:pw@hooks.example/"}, "url", "invalid_webhook_url"),
        ({**good, "name": "Bad Name"}, "name", "invalid_name"),
        ({**good, "secret": "short"}, "secret", "invalid_webhook_secret"),
    ):
        body = {
            "name": fields["name"],
            "url": fields["url"],
            **({"secret": fields["secret"]} if "secret" in fields else {}),
        }
        api = fleet.client.post("/v1/webhooks", json=body, headers=fleet.admin)
        assert (api.status_code, api.json()["code"]) == (422, code)
        for confirm in ({}, {"confirm": "yes"}):
            r = _post(admin, "/dashboard/webhooks/new", **fields, **confirm)
            assert r.status_code == 422, (fields, r.text[:300])
            assert code in _field_error(r.text, field)
            assert "short" not in r.text.split('id="wh-secret"')[1][:200]  # the secret is never refilled
    for role in ("viewer", "operator"):  # the API's role for /v1/webhooks: admin
        client = _signed_in(world, role, f"{role}-1")
        page = client.get("/dashboard/alerts").text
        assert ">Add webhook…" not in page
        assert "admin role" in page
        for path in ("/dashboard/webhooks/new", "/dashboard/webhooks/wh_0000000000000000/remove"):
            for confirm in ({}, {"confirm": "yes"}):
                r = _post(client, path, **good, **confirm)
                assert r.status_code == 403, (role, path)
                assert '<code id="error-code">permission_denied</code>' in r.text
    for csrf in ({}, {"csrf": "forged"}):
        r = admin.post("/dashboard/webhooks/new", data={**good, **csrf, "confirm": "yes"})
        assert (r.status_code, "csrf_failed" in r.text) == (403, True)
    assert _hooks(fleet) == []
    assert _audit(fleet, "webhook.create") == []


def test_an_operator_pins_a_label_selection_after_seeing_what_it_matches(world):
    fleet, _v1, v2, devices = world
    operator = _signed_in(world, "operator", "olga")
    site0 = sorted(identity.device_id for identity, _ in devices[::2])
    page = operator.get("/dashboard/pins").text
    assert 'action="/dashboard/pins/by-selector"' in page
    asked = operator.post(
        "/dashboard/pins/by-selector",
        data={"csrf": csrf_of(page), "selector": "site=site-0", "artifact_id": v2},
        follow_redirects=False,
    )
    assert asked.status_code == 200, asked.text[:300]
    summary = htmlmod.unescape(asked.text)
    assert f"Pin {len(site0)} device(s) matching site=site-0 to {v2}?" in summary
    assert all(device_id in summary for device_id in site0)
    assert _device_pins(fleet) == []  # a dry run
    done = operator.post("/dashboard/pins/by-selector", data=_hidden(asked.text), follow_redirects=False)
    assert (done.status_code, done.headers["location"]) == (303, "/dashboard/pins?done=pin_selection")
    assert _device_pins(fleet) == [(d, v2) for d in site0]
    listed = operator.get(done.headers["location"]).text
    assert "Pins set on every matched device" in listed
    assert all(f'data-pin="device:{d}:default"' in listed for d in site0)
    (audited,) = _selection_audit(fleet)
    assert (audited["actor"], audited["target"]) == ("olga", "selector:site=site-0")


def test_refused_selector_pins_show_the_apis_code_and_change_nothing(world):
    fleet, _v1, v2, _devices = world
    operator = _signed_in(world, "operator", "olga")
    page = operator.get("/dashboard/pins").text
    for selector, artifact_id, field, code in (
        ("site=", v2, "selector", "invalid_selector"),
        ("site in (a", v2, "selector", "invalid_selector"),
        ("", v2, "selector", "invalid_document"),
        ("site=nowhere", v2, "selector", "selector_matches_nothing"),
        ("site=site-0", "art_00000000000000ff", "artifact_id", "artifact_not_found"),
    ):
        if selector:
            api = fleet.client.post(
                "/v1/pins/by-selector",
                json={"selector": selector, "artifact_id": artifact_id},
                headers=fleet.admin,
            )
            assert api.json()["code"] == code, api.text
        for confirm in ({}, {"confirm": "yes"}):
            r = operator.post(
                "/dashboard/pins/by-selector",
                data={"csrf": csrf_of(page), "selector": selector, "artifact_id": artifact_id, **confirm},
            )
            assert r.status_code in (404, 422), (selector, r.text[:300])
            assert code in _field_error(r.text, field), selector
            assert selector in htmlmod.unescape(r.text)  # what was typed stays
    viewer = _signed_in(world, "viewer", "victor")
    assert ">Pin matching devices…" not in viewer.get("/dashboard/pins").text
    for confirm in ({}, {"confirm": "yes"}):
        r = viewer.post(
            "/dashboard/pins/by-selector",
            data={
                "csrf": csrf_of(viewer.get("/dashboard/pins").text),
                "selector": "site=site-0",
                "artifact_id": v2,
                **confirm,
            },
        )
        assert (r.status_code, "permission_denied" in r.text) == (403, True)
    for csrf in ({}, {"csrf": "forged"}):
        r = operator.post(
            "/dashboard/pins/by-selector",
            data={"selector": "site=site-0", "artifact_id": v2, "confirm": "yes", **csrf},
        )
        assert (r.status_code, "csrf_failed" in r.text) == (403, True)
    assert _device_pins(fleet) == []
    assert _selection_audit(fleet) == []
