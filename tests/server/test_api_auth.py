from __future__ import annotations

import hashlib

from sqlalchemy import select

from edgefleet.server.store import OperatorTokenRow


def test_missing_malformed_and_wrong_tokens(api) -> None:
    for headers in (
        {},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer efop_wrong"},
        {"Authorization": "Bearer " + "x" * 1000},
    ):
        r = api.client.get("/v1/classes", headers=headers)
        assert r.status_code == 401, headers
        assert r.json()["code"] == "unauthenticated"
        assert r.headers["www-authenticate"] == "Bearer"
    assert api.client.get("/healthz").status_code == 200  # no auth


def test_roles(api) -> None:
    viewer, operator = api.token("viewer"), api.token("operator")
    assert api.client.get("/v1/models", headers=viewer).status_code == 200
    r = api.client.post("/v1/models", json={"name": "detector"}, headers=viewer)
    assert r.status_code == 403
    assert r.json()["code"] == "permission_denied"
    assert r.json()["details"] == {"expected": "operator", "got": "viewer"}
    assert api.count("models") == 0
    assert api.client.post("/v1/models", json={"name": "detector"}, headers=operator).status_code == 201
    r = api.client.post("/v1/tokens", json={"name": "x", "role": "admin"}, headers=operator)
    assert r.status_code == 403
    assert api.client.get("/v1/tokens", headers=operator).status_code == 403
    assert api.client.get("/v1/audit", headers=viewer).status_code == 200


def test_tokens_are_hashed_listed_without_secret_and_revocable(api) -> None:
    r = api.client.post("/v1/tokens", json={"name": "ci", "role": "operator"}, headers=api.admin)
    assert r.status_code == 201
    created = r.json()
    secret = created["token"]
    assert secret.startswith("efop_")
    assert len(secret) == 5 + 43
    with api.app.state.context.db.session() as s:
        row = s.execute(select(OperatorTokenRow)).scalar_one()
    assert row.token_sha256 == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in repr(row.__dict__)
    listing = api.client.get("/v1/tokens", headers=api.admin).json()
    assert [t["name"] for t in listing["items"]] == ["ci"]
    assert "token" not in listing["items"][0]
    dup = api.client.post("/v1/tokens", json={"name": "ci", "role": "viewer"}, headers=api.admin)
    assert dup.status_code == 409
    assert dup.json()["code"] == "token_exists"
    h = {"Authorization": f"Bearer {secret}"}
    assert api.client.get("/v1/models", headers=h).status_code == 200
    assert api.client.delete(f"/v1/tokens/{created['id']}", headers=api.admin).status_code == 204
    r = api.client.get("/v1/models", headers=h)
    assert r.status_code == 401
    assert r.json()["code"] == "unauthenticated"
    r = api.client.delete("/v1/tokens/tok_0000000000000000", headers=api.admin)
    assert r.status_code == 404
    assert r.json()["code"] == "token_not_found"
    bad = api.client.post("/v1/tokens", json={"name": "x", "role": "root"}, headers=api.admin)
    assert bad.status_code == 422
    assert bad.json()["code"] == "invalid_role"
    assert api.client.get("/v1/tokens", headers=api.admin).json()["total"] == 1


def test_audit_records_actor_and_filters(api) -> None:
    op = api.token("operator", name="alice")
    api.client.post("/v1/models", json={"name": "detector"}, headers=op)
    api.client.patch("/v1/models/detector", json={"description": "d"}, headers=api.admin)
    rows = api.client.get("/v1/audit", headers=api.admin).json()["items"]
    assert [(r["actor"], r["action"], r["target"]) for r in rows[:3]] == [
        ("bootstrap-admin", "model.update", "detector"),
        ("alice", "model.create", "detector"),
        ("bootstrap-admin", "token.create", rows[2]["target"]),
    ]
    assert rows[0]["at"].endswith("+00:00")
    only = api.client.get("/v1/audit", params={"actor": "alice"}, headers=api.admin).json()
    assert only["total"] == 1
    assert only["items"][0]["action"] == "model.create"
    assert (
        api.client.get("/v1/audit", params={"action": "model.update"}, headers=api.admin).json()["total"] == 1
    )
