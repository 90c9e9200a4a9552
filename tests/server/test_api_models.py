from __future__ import annotations

import hashlib


def test_model_lifecycle(api) -> None:
    h = api.token("operator")
    r = api.client.post("/v1/models", json={"name": "detector", "labels": {"team": "vision"}}, headers=h)
    assert r.status_code == 201
    assert r.json()["version_count"] == 0
    assert r.json()["labels"] == {"team": "vision"}
    api.client.post("/v1/models", json={"name": "classifier"}, headers=h)
    page = api.client.get("/v1/models", params={"name_prefix": "det"}, headers=h).json()
    assert [m["name"] for m in page["items"]] == ["detector"]
    assert page["total"] == 1
    r = api.client.patch("/v1/models/detector", json={"description": "finds boxes"}, headers=h)
    assert r.status_code == 200
    assert r.json()["description"] == "finds boxes"
    assert r.json()["labels"] == {"team": "vision"}
    assert api.client.delete("/v1/models/classifier", headers=h).status_code == 204
    assert api.client.get("/v1/models/classifier", headers=h).json()["code"] == "model_not_found"
    assert api.audit_actions()[:4] == ["model.delete", "model.update", "model.create", "model.create"]


def test_model_exists(api) -> None:
    api.client.post("/v1/models", json={"name": "detector"}, headers=api.admin)
    r = api.client.post("/v1/models", json={"name": "detector"}, headers=api.admin)
    assert r.status_code == 409
    assert r.json()["code"] == "model_exists"
    assert api.count("models") == 1


def test_bad_model_bodies(api) -> None:
    cases = [
        ({"name": "../x"}, "name"),
        ({"name": 42}, "name"),
        ({"name": "ok", "labels": {"Bad Key": "v"}}, "labels"),
        ({"name": "ok", "labels": {"k": 1}}, "labels.k"),
        ({"name": "ok", "surprise": True}, "surprise"),
        ({"name": "ok", "description": "x" * 2001}, "description"),
    ]
    for body, field in cases:
        r = api.client.post("/v1/models", json=body, headers=api.admin)
        assert r.status_code == 422, body
        assert r.json()["code"] == "invalid_document"
        assert r.json()["details"]["errors"][0]["field"] == field, body
    assert api.count("models") == 0


def test_versions(api) -> None:
    api.client.post("/v1/models", json={"name": "detector"}, headers=api.admin)
    missing = hashlib.sha256(b"never uploaded").hexdigest()
    r = api.client.post(
        "/v1/models/detector/versions", json={"version": "1.0.0", "source_sha256": missing}, headers=api.admin
    )
    assert r.status_code == 422
    assert r.json()["code"] == "blob_missing"
    assert api.count("model_versions") == 0
    sha = api.upload(b"source-bytes")
    body = {"version": "1.0.0", "source_sha256": sha, "metadata": {"framework": "sklearn"}}
    r = api.client.post("/v1/models/detector/versions", json=body, headers=api.admin)
    assert r.status_code == 201
    assert r.json()["source_length"] == len(b"source-bytes")
    assert r.json()["metadata"] == {"framework": "sklearn"}
    r = api.client.post("/v1/models/detector/versions", json=body, headers=api.admin)
    assert r.status_code == 409
    assert r.json()["code"] == "version_exists"
    assert api.client.get("/v1/models/detector", headers=api.admin).json()["version_count"] == 1
    assert api.client.get("/v1/models/detector/versions", headers=api.admin).json()["total"] == 1
    r = api.client.get("/v1/models/detector/versions/2.0.0", headers=api.admin)
    assert r.status_code == 404
    assert r.json()["code"] == "version_not_found"
    r = api.client.post("/v1/models/nope/versions", json=body, headers=api.admin)
    assert r.status_code == 404
    assert r.json()["code"] == "model_not_found"
    r = api.client.delete("/v1/models/detector", headers=api.admin)
    assert r.status_code == 409
    assert r.json()["code"] == "model_in_use"
    assert api.client.delete("/v1/models/detector/versions/1.0.0", headers=api.admin).status_code == 204
    assert api.client.delete("/v1/models/detector", headers=api.admin).status_code == 204


def test_version_bad_sha(api) -> None:
    api.client.post("/v1/models", json={"name": "detector"}, headers=api.admin)
    r = api.client.post(
        "/v1/models/detector/versions", json={"version": "1", "source_sha256": "XYZ"}, headers=api.admin
    )
    assert r.status_code == 422
    assert r.json()["details"]["errors"][0]["field"] == "source_sha256"
