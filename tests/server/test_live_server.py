"""The real server over real HTTP on loopback (uvicorn in a thread), and the CLI bootstrap entry point."""

from __future__ import annotations

import hashlib
import os

import httpx

from edgefleet.server import create_operator_token


def test_live_server_serves_uploads_and_ranges(live_server) -> None:
    data = os.urandom(100_000)
    sha = hashlib.sha256(data).hexdigest()
    with httpx.Client(base_url=live_server.url, headers=live_server.admin_headers, timeout=10) as c:
        assert c.get("/healthz").json()["status"] == "ok"

        def chunks():
            for i in range(0, len(data), 8192):
                yield data[i : i + 8192]

        r = c.put(f"/v1/blobs/{sha}", content=chunks())
        assert r.status_code == 201, r.text
        r = c.get(f"/v1/blobs/{sha}", headers={"Range": "bytes=50000-"})
        assert r.status_code == 206
        assert r.content == data[50000:]
        r = c.get("/v1/models", headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401
        assert r.json()["code"] == "unauthenticated"


def test_create_operator_token_bootstraps_straight_in_the_database(live_server) -> None:
    secret = create_operator_token(live_server.settings, "deployer", "operator")
    assert secret.startswith("efop_")
    with httpx.Client(base_url=live_server.url, timeout=10) as c:
        h = {"Authorization": f"Bearer {secret}"}
        assert c.post("/v1/models", json={"name": "detector"}, headers=h).status_code == 201
        assert c.post("/v1/tokens", json={"name": "x", "role": "admin"}, headers=h).status_code == 403
        audit = c.get("/v1/audit", headers=live_server.admin_headers).json()["items"]
    assert [(a["actor"], a["action"]) for a in audit] == [
        ("deployer", "model.create"),
        ("cli-bootstrap", "token.create"),
    ]


def test_live_server_on_the_parametrized_database(live_server_factory, database_url) -> None:
    server = live_server_factory(database_url=database_url)
    kind = "postgresql" if database_url.startswith("postgresql") else "sqlite"
    with httpx.Client(base_url=server.url, timeout=10) as c:
        assert c.get("/healthz").json()["database"] == kind
