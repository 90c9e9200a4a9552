from __future__ import annotations

import copy

import pytest

from edgefleet.protocol import parse_classes_toml

NAMES = ["factory-gateway-gpu", "intel-lowpower-detector", "jetson-vision-standard", "medical-cart-cpu"]


def _docs(classes_toml: str) -> list[dict]:
    return [c.to_dict() for c in parse_classes_toml(classes_toml)]


def test_apply_creates_then_is_unchanged_then_updates(api, classes_toml) -> None:
    docs = _docs(classes_toml)
    r = api.client.post("/v1/classes/apply", json={"classes": docs}, headers=api.admin)
    assert r.status_code == 200, r.text
    assert sorted(r.json()["created"]) == NAMES
    r = api.client.post("/v1/classes/apply", json={"classes": docs}, headers=api.admin)
    assert r.json() == {"created": [], "updated": [], "unchanged": [d["name"] for d in docs]}
    docs[0]["description"] = "changed"
    r = api.client.post("/v1/classes/apply", json={"classes": docs}, headers=api.admin)
    assert r.json()["updated"] == [docs[0]["name"]]
    assert api.audit_actions().count("class.apply") == 3


def test_list_get_paginate_filter_and_unknown_fields_survive(api, classes_toml) -> None:
    docs = _docs(classes_toml)
    docs[0]["vendor_note"] = {"kept": True}  # unknown field: preserved
    api.client.post("/v1/classes/apply", json={"classes": docs}, headers=api.admin)
    viewer = api.token("viewer")
    page = api.client.get("/v1/classes", params={"limit": 2, "offset": 1}, headers=viewer).json()
    assert page["total"] == 4
    assert page["limit"] == 2
    assert page["offset"] == 1
    assert [c["name"] for c in page["items"]] == NAMES[1:3]
    only = api.client.get("/v1/classes", params={"name_prefix": "jetson"}, headers=viewer).json()
    assert [c["name"] for c in only["items"]] == ["jetson-vision-standard"]
    got = api.client.get(f"/v1/classes/{docs[0]['name']}", headers=viewer).json()
    assert got["vendor_note"] == {"kept": True}
    assert got["budgets"] == docs[0]["budgets"]


def test_put_creates_then_updates(api, classes_toml) -> None:
    doc = _docs(classes_toml)[0]
    r = api.client.put(f"/v1/classes/{doc['name']}", json=doc, headers=api.admin)
    assert r.status_code == 201
    doc["description"] = "v2"
    r = api.client.put(f"/v1/classes/{doc['name']}", json=doc, headers=api.admin)
    assert r.status_code == 200
    assert r.json()["description"] == "v2"
    assert api.audit_actions()[:2] == ["class.update", "class.create"]


def test_put_name_mismatch(api, classes_toml) -> None:
    doc = _docs(classes_toml)[0]
    r = api.client.put("/v1/classes/another-name", json=doc, headers=api.admin)
    assert r.status_code == 422
    assert r.json()["code"] == "name_mismatch"
    assert api.count("hardware_classes") == 0


def test_apply_is_all_or_nothing(api, classes_toml) -> None:
    docs = _docs(classes_toml)
    bad = copy.deepcopy(docs)
    bad[2]["budgets"]["max_model_mb"] = "lots"  # wrong type in the third class
    r = api.client.post("/v1/classes/apply", json={"classes": bad}, headers=api.admin)
    assert r.status_code == 422
    body = r.json()
    assert body["code"] == "invalid_document"
    assert body["details"]["index"] == 2
    assert body["details"]["errors"][0]["field"] == "budgets.max_model_mb"
    assert bad[2]["name"] in body["message"]
    assert api.count("hardware_classes") == 0
    assert api.count("audit_log") == 0


def test_apply_rejects_duplicates_and_path_like_names(api, classes_toml) -> None:
    docs = _docs(classes_toml)
    r = api.client.post("/v1/classes/apply", json={"classes": [docs[0], docs[0]]}, headers=api.admin)
    assert r.status_code == 422
    assert r.json()["code"] == "duplicate_name"
    evil = dict(docs[0], name="../x")
    r = api.client.post("/v1/classes/apply", json={"classes": [evil]}, headers=api.admin)
    assert r.status_code == 422
    assert r.json()["code"] == "invalid_document"
    assert r.json()["details"]["errors"][0]["field"] == "name"
    assert api.count("hardware_classes") == 0


def test_unsupported_schema_version(api, classes_toml) -> None:
    doc = dict(_docs(classes_toml)[0], schema_version=99)
    r = api.client.put(f"/v1/classes/{doc['name']}", json=doc, headers=api.admin)
    assert r.status_code == 422
    assert r.json()["code"] == "unsupported_schema_version"
    assert r.json()["details"] == {"expected": 1, "got": 99}


def test_delete_and_not_found(api, classes_toml) -> None:
    doc = _docs(classes_toml)[0]
    api.client.put(f"/v1/classes/{doc['name']}", json=doc, headers=api.admin)
    assert api.client.delete(f"/v1/classes/{doc['name']}", headers=api.admin).status_code == 204
    r = api.client.get(f"/v1/classes/{doc['name']}", headers=api.admin)
    assert r.status_code == 404
    assert r.json()["code"] == "class_not_found"
    r = api.client.delete(f"/v1/classes/{doc['name']}", headers=api.admin)
    assert r.status_code == 404
    assert r.json()["code"] == "class_not_found"


@pytest.mark.parametrize(
    ("users", "expected"),
    [
        ({"token"}, {"artifacts": 0, "devices": 0, "enrollment_tokens": 1}),
        ({"device"}, {"artifacts": 0, "devices": 1, "enrollment_tokens": 1}),  # its spent token too
        ({"revoked_device"}, {"artifacts": 0, "devices": 1, "enrollment_tokens": 1}),
        ({"artifact"}, {"artifacts": 1, "devices": 0, "enrollment_tokens": 0}),
        ({"artifact", "device", "token"}, {"artifacts": 1, "devices": 1, "enrollment_tokens": 2}),
        (set(), None),
    ],
)
def test_a_class_in_use_cannot_be_deleted_and_says_what_uses_it(fleet, users, expected) -> None:
    name = "intel-lowpower-detector"
    if "token" in users:
        fleet.token(hardware_class=name)
    if users & {"device", "revoked_device"}:
        identity, _ = fleet.enroll(fleet.token(hardware_class=name))
        if "revoked_device" in users:
            r = fleet.client.post(f"/v1/devices/{identity.device_id}/revoke", json={}, headers=fleet.admin)
            assert r.status_code == 200, r.text
    if "artifact" in users:
        fleet.artifact(hardware_class=name)
    r = fleet.client.delete(f"/v1/classes/{name}", headers=fleet.admin)
    if expected is None:
        assert r.status_code == 204, r.text
        assert fleet.client.get(f"/v1/classes/{name}", headers=fleet.admin).status_code == 404
        return
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["code"] == "class_in_use"
    assert body["details"] == {"expected": {k: 0 for k in expected}, "got": expected}
    for key, count in expected.items():
        if count:
            assert key.replace("_", " ") in body["message"]
    assert fleet.client.get(f"/v1/classes/{name}", headers=fleet.admin).status_code == 200  # still there
    audit = fleet.client.get("/v1/audit", params={"target": name}, headers=fleet.admin).json()["items"]
    assert "class.delete" not in [a["action"] for a in audit]


@pytest.mark.parametrize(
    ("runtime", "code"),
    [
        # LiteRT's adapter runs on the CPU only (no delegates)
        (
            {"name": "litert", "execution_providers": ["OpenVINOExecutionProvider", "CPUExecutionProvider"]},
            "execution_provider_unsupported",
        ),
        # the OpenVINO native adapter cannot use CUDA
        (
            {"name": "openvino", "execution_providers": ["CUDAExecutionProvider", "CPUExecutionProvider"]},
            "execution_provider_unsupported",
        ),
    ],
)
def test_unservable_class_is_refused_at_apply_and_put(api, classes_toml, runtime, code) -> None:
    docs = _docs(classes_toml)
    docs[1]["runtime"] = {**docs[1]["runtime"], **runtime}
    r = api.client.post("/v1/classes/apply", json={"classes": docs}, headers=api.admin)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == code
    assert docs[1]["name"] in body["message"]
    assert "expected" in body["details"]
    assert body["details"]["got"]
    assert api.count("hardware_classes") == 0  # all or nothing
    r = api.client.put(f"/v1/classes/{docs[1]['name']}", json=docs[1], headers=api.admin)
    assert (r.status_code, r.json()["code"]) == (422, code)
    assert api.count("hardware_classes") == 0


def test_openvino_class_on_cpu_and_gpu_is_servable(api, classes_toml) -> None:
    doc = _docs(classes_toml)[1]
    doc["runtime"] = {
        "name": "openvino",
        "min_version": "2024.0",
        "execution_providers": ["OpenVINOExecutionProvider", "CPUExecutionProvider"],
    }
    r = api.client.put(f"/v1/classes/{doc['name']}", json=doc, headers=api.admin)
    assert r.status_code == 201, r.text
