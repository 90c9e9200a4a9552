from __future__ import annotations

import pytest


def test_malformed_json(api) -> None:
    r = api.client.post(
        "/v1/models", content=b'{"name": "det', headers={**api.admin, "Content-Type": "application/json"}
    )
    assert r.status_code == 422
    assert r.json()["code"] == "malformed_json"
    assert set(r.json()) == {"code", "message", "details"}
    assert api.count("models") == 0


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "query.limit"),
        ({"limit": 501}, "query.limit"),
        ({"offset": -1}, "query.offset"),
        ({"limit": "many"}, "query.limit"),
    ],
)
def test_bad_pagination(api, params, field) -> None:
    r = api.client.get("/v1/models", params=params, headers=api.admin)
    assert r.status_code == 422
    assert r.json()["code"] == "invalid_document"
    assert r.json()["details"]["errors"][0]["field"] == field


def test_json_body_limit(make_api) -> None:
    api = make_api(max_json_bytes=1000)
    r = api.client.post("/v1/models", json={"name": "d", "description": "x" * 2000}, headers=api.admin)
    assert r.status_code == 413
    assert r.json()["code"] == "payload_too_large"
    assert api.count("models") == 0


def test_unknown_route_and_method(api) -> None:
    r = api.client.get("/v1/nothing", headers=api.admin)
    assert r.status_code == 404
    assert r.json()["code"] == "not_found"
    r = api.client.post("/v1/classes/x/y", headers=api.admin)
    assert r.status_code in (404, 405)
    assert r.json()["code"] in ("not_found", "method_not_allowed")


def test_unexpected_error_is_internal_error_without_internals(make_api) -> None:
    class Exploding:
        def size(self, sha256: str) -> int | None:
            raise RuntimeError("secret internals /etc/shadow")

        def sweep_temp(self, *, now_s: float, older_than_s: float) -> int:
            return 0

    api = make_api(blob_store=Exploding())
    r = api.client.get("/v1/blobs/" + "0" * 64, headers=api.admin)
    assert r.status_code == 500
    assert r.json() == {
        "code": "internal_error",
        "message": "unexpected server error; see the server log",
        "details": {},
    }


def test_openapi_is_published(api) -> None:
    spec = api.client.get("/openapi.json").json()
    for path in (
        "/v1/classes/apply",
        "/v1/models/{name}/versions",
        "/v1/blobs/{sha256}",
        "/v1/artifacts",
        "/v1/tokens",
        "/v1/audit",
        "/healthz",
    ):
        assert path in spec["paths"], path


@pytest.mark.parametrize(
    ("details", "retry_after"),
    [
        ({"retry_after_s": 7}, "7"),
        ({"retry_after_s": 2.1}, "3"),  # whole seconds, rounded up: never earlier than asked
        ({"retry_after_s": 0}, "1"),
        ({"retry_after_s": -5}, "1"),
        ({"retry_after_s": 59.5}, "60"),
        ({"retry_after_s": "soon"}, "1"),
        ({"retry_after_s": True}, "1"),
        ({}, "1"),  # a 429 always says when to come back
    ],
)
def test_rate_limited_errors_carry_retry_after(details, retry_after) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from edgefleet.protocol.errors import ConflictError, RateLimitedError
    from edgefleet.server.api.errors import install_error_handlers

    app = FastAPI()
    install_error_handlers(app)

    @app.get("/limited")
    def limited() -> None:
        raise RateLimitedError("slow down", code="enrollment_rate_limited", details=details)

    @app.get("/conflict")
    def conflict() -> None:
        raise ConflictError("no", details={"retry_after_s": 5})

    with TestClient(app) as client:
        r = client.get("/limited")
        assert (r.status_code, r.json()["code"]) == (429, "enrollment_rate_limited")
        assert r.headers["retry-after"] == retry_after
        assert "retry-after" not in client.get("/conflict").headers  # only rate limiting sets it
