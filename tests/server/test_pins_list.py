"""``GET /v1/pins``: every pin, filtered by scope or target, paged, for viewers (SQLite and PostgreSQL)."""

from __future__ import annotations

from tests.server.fleet import fleet  # noqa: F401  # the simulated-fleet fixture


def test_pins_are_listed_with_filters_for_viewers(fleet):  # noqa: F811
    v1, v2 = fleet.artifact("1.0.0"), fleet.artifact("2.0.0")
    device_id = fleet.enroll()[0].device_id
    for path, artifact in (
        ("/v1/pins/class/medical-cart-cpu/default", v1),
        (f"/v1/pins/device/{device_id}/default", v2),
        (f"/v1/pins/device/{device_id}/audio", v1),
    ):
        assert fleet.client.put(path, json={"artifact_id": artifact}, headers=fleet.admin).status_code == 204
    r = fleet.client.post("/v1/tokens", json={"name": "vera", "role": "viewer"}, headers=fleet.admin)
    viewer = {"authorization": f"Bearer {r.json()['token']}"}

    every = fleet.client.get("/v1/pins", headers=viewer).json()
    assert every["total"] == 3
    assert [(p["scope"], p["target"], p["slot"], p["artifact_id"]) for p in every["items"]] == [
        ("class", "medical-cart-cpu", "default", v1),
        ("device", device_id, "audio", v1),
        ("device", device_id, "default", v2),
    ]
    assert {p["created_by"] for p in every["items"]} == {"bootstrap-admin"}
    devices = fleet.client.get("/v1/pins", params={"scope": "device", "limit": 1}, headers=viewer).json()
    assert (devices["total"], len(devices["items"]), devices["items"][0]["slot"]) == (2, 1, "audio")
    one = fleet.client.get("/v1/pins", params={"target": "medical-cart-cpu"}, headers=viewer).json()
    assert [p["scope"] for p in one["items"]] == ["class"]

    assert fleet.client.get("/v1/pins").status_code == 401
    for params in ({"scope": "region"}, {"target": "a\x00b"}, {"target": "x" * 64}):
        bad = fleet.client.get("/v1/pins", params=params, headers=viewer)
        assert (bad.status_code, bad.json()["code"]) == (422, "invalid_document"), params
    cleared = fleet.client.delete(f"/v1/pins/device/{device_id}/audio", headers=fleet.admin)
    assert cleared.status_code == 204
    assert fleet.client.get("/v1/pins", headers=viewer).json()["total"] == 2
