"""The kill switch's reach, counted from device reports: pure, then through the API on both databases."""

from __future__ import annotations

from tests.dashboard.conftest import browser, make_token, sign_in

from edgefleet.server.services.kill_switch import count_fates, device_fate

ART = "art_0123456789abcdef"


def _report(slot: dict, serving: dict | None = None) -> dict:
    return {"slots": {"default": slot}, **({"serving": serving} if serving else {})}


def test_device_fate_from_one_report() -> None:
    assert device_fate(None, ART) is None
    assert device_fate(_report({"active": ART, "previous": "art_old"}), ART) == "rolls_back"
    assert device_fate(_report({"active": ART, "previous": None}), ART) == "degrades"
    withdrawn = {"active": None, "state": "withdrawn:artifact_disabled", "failed_artifact": ART}
    assert device_fate(_report(withdrawn), ART) == "withdrawn"
    assert device_fate(_report({**withdrawn, "failed_artifact": "art_other"}), ART) is None
    assert device_fate(_report({"active": "art_other", "previous": ART}), ART) is None


def test_count_fates_counts_withdrawn_devices_by_rung() -> None:
    withdrawn = {"active": None, "state": "withdrawn:artifact_disabled", "failed_artifact": ART}
    counts = count_fates(
        [
            _report({"active": ART, "previous": "art_old"}),
            _report({"active": ART}),
            _report(withdrawn, {"mode": "rule"}),
            _report(withdrawn, {"mode": "fallback"}),
            _report(withdrawn, {"mode": "rule"}),
            None,
        ],
        ART,
    )
    assert counts.to_wire() == {
        "rolls_back": 1,
        "degrades": 1,
        "withdrawn": 3,
        "withdrawn_modes": {"rule": 2, "fallback": 1},
    }


def test_disable_answers_and_audits_the_reach_and_the_artifact_shows_the_withdrawn(fleet) -> None:
    v1, v2 = fleet.artifact("1.0.0"), fleet.artifact("2.0.0")
    a, b = fleet.enroll(), fleet.enroll()
    fleet.report(*a, active=v2, previous=v1)
    fleet.report(*b, active=v2)
    r = fleet.client.patch(
        f"/v1/artifacts/{v2}", json={"disabled": True, "reason": "bad"}, headers=fleet.admin
    )
    assert r.status_code == 200, r.text
    assert r.json()["kill_switch"] == {"rolls_back": 1, "degrades": 1, "withdrawn": 0, "withdrawn_modes": {}}
    audit = fleet.client.get("/v1/audit", params={"action": "artifact.disable"}, headers=fleet.admin).json()
    assert audit["items"][0]["details"]["kill_switch"]["degrades"] == 1
    # b withdraws it and serves on the rule; a rolls back
    fleet.report(*a, active=v1)
    identity, ddir = b
    body = {
        "sequence": 99,
        "boot_id": "boot-" + identity.device_id,
        "reported_at": fleet.clock().isoformat(),
        "status": "degraded",
        "slots": {
            "default": {
                "active": None,
                "state": "withdrawn:artifact_disabled",
                "failed_artifact": v2,
                "failure_code": "artifact_disabled",
            }
        },
        "serving": {"mode": "rule", "reason": "artifact_disabled"},
    }
    fleet.channel(identity, ddir).request("POST", "/v1/device/report", json_body=body)
    shown = fleet.client.get(f"/v1/artifacts/{v2}", headers=fleet.admin).json()
    assert shown["kill_switch"] == {
        "rolls_back": 0,
        "degrades": 0,
        "withdrawn": 1,
        "withdrawn_modes": {"rule": 1},
    }
    assert "kill_switch" not in fleet.client.get(f"/v1/artifacts/{v1}", headers=fleet.admin).json()


def test_the_artifact_page_shows_the_reach(fleet) -> None:
    v1, v2 = fleet.artifact("1.0.0"), fleet.artifact("2.0.0")
    a, b = fleet.enroll(), fleet.enroll()
    fleet.report(*a, active=v2, previous=v1)
    fleet.report(*b, active=v2)
    fleet.client.patch(f"/v1/artifacts/{v2}", json={"disabled": True}, headers=fleet.admin)
    viewer = browser(fleet)
    sign_in(viewer, make_token(fleet, "viewer", "victor"))
    page = viewer.get(f"/dashboard/artifacts/{v2}").text
    assert "1 with a previous version (rolling back), 1 without" in page
    assert 'id="kill-switch"' not in viewer.get(f"/dashboard/artifacts/{v1}").text
