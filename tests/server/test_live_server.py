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


def test_client_disconnect_mid_upload_leaves_no_partial_file(live_server) -> None:
    import socket
    import time
    from urllib.parse import urlsplit

    data = os.urandom(50_000)
    sha = hashlib.sha256(data).hexdigest()
    host, port = urlsplit(live_server.url).hostname, urlsplit(live_server.url).port
    blob_dir = live_server.settings.resolved_blob_dir
    with socket.create_connection((host, port), timeout=10) as sock:
        head = (
            f"PUT /v1/blobs/{sha} HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {live_server.admin_token}\r\n"
            f"Content-Length: {len(data)}\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        sock.sendall(head.encode() + data[:20_000])
        deadline = time.monotonic() + 10
        while not list(blob_dir.rglob("*.tmp")) and time.monotonic() < deadline:
            time.sleep(0.02)  # wait until the server is mid-write
        assert list(blob_dir.rglob("*.tmp")), "the server never started writing the upload"
    deadline = time.monotonic() + 20
    while list(blob_dir.rglob("*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p for p in blob_dir.rglob("*") if p.is_file()] == []
    with httpx.Client(base_url=live_server.url, headers=live_server.admin_headers, timeout=10) as c:
        assert c.get(f"/v1/blobs/{sha}").status_code == 404
        assert c.get("/v1/audit", params={"action": "blob.upload"}).json()["total"] == 0


def test_concurrent_writers_all_succeed(live_server_factory, database_url) -> None:
    from concurrent.futures import ThreadPoolExecutor

    server = live_server_factory(database_url=database_url)

    def work(i: int) -> tuple[int, int]:
        data = f"blob-{i}".encode() * 1000
        with httpx.Client(base_url=server.url, headers=server.admin_headers, timeout=30) as c:
            up = c.put(f"/v1/blobs/{hashlib.sha256(data).hexdigest()}", content=data).status_code
            model = c.post("/v1/models", json={"name": f"model-{i}"}).status_code
        return up, model

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, range(16)))
    assert results == [(201, 201)] * 16
    with httpx.Client(base_url=server.url, headers=server.admin_headers, timeout=10) as c:
        assert c.get("/v1/models").json()["total"] == 16
        assert c.get("/v1/audit").json()["total"] == 32
