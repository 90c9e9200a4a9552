"""Bodies no JSON parser should have accepted (issue 14, items 3 and 6): never a 500, always a stable code,
the caller authenticated before the body is read, nothing stored."""

from __future__ import annotations

import json

import pytest

from edgefleet.protocol.errors import EdgefleetError

JSON = {"Content-Type": "application/json"}
BAD_BODIES = {
    "nan": b'{"token": NaN, "public_key_pem": "x"}',
    "infinity": b'{"token": "t", "public_key_pem": "x", "serial": Infinity}',
    "minus_infinity": b'{"token": "t", "public_key_pem": -Infinity}',
    "overflow": b'{"token": "t", "public_key_pem": "x", "agent_version": 1e400}',
    "lone_surrogate": b'{"token": "\\ud800", "public_key_pem": "x"}',
    "surrogate_key": b'{"token": "t", "public_key_pem": "x", "\\udc00": 1}',
    "nul": b'{"token": "t\\u0000", "public_key_pem": "x"}',
    "nul_key": b'{"token": "t", "public_key_pem": "x", "a\\u0000": 1}',
    "not_utf8": b'{"token": "\xff\xfe", "public_key_pem": "x"}',
    "utf16": '{"token": "t", "public_key_pem": "x"}'.encode("utf-16"),
    "too_deep": b'{"token": "t", "public_key_pem": "x", "extra": ' + b"[" * 5000 + b"]" * 5000 + b"}",
}


def _strict(r) -> dict:
    """The response body parses as strict JSON and has the error shape."""
    body = json.loads(r.content.decode("utf-8"), parse_constant=lambda c: pytest.fail(f"{c} in body"))
    assert set(body) == {"code", "message", "details"}, body
    return body


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
def test_enroll_refuses_bodies_json_should_not_accept(api, name) -> None:
    r = api.client.post("/v1/enroll", content=BAD_BODIES[name], headers=JSON)
    assert r.status_code == 422, r.text
    body = _strict(r)
    assert body["code"] == "malformed_json"
    assert "\\ud800" not in r.text
    assert "\ud800" not in r.text
    assert api.count("devices") == 0


def test_a_surrogate_in_a_validation_error_is_escaped_not_echoed(api) -> None:
    """A surrogate's UTF-8-style bytes in a query string reach validation as replacement characters."""
    r = api.client.get("/v1/models?limit=%ED%A0%80&name_prefix=%ED%A0%80", headers=api.admin)
    assert r.status_code == 422
    assert _strict(r)["code"] == "invalid_document"


def test_a_nul_in_a_query_reaches_no_database_as_a_500(api) -> None:
    """PostgreSQL text cannot hold NUL: a filter holding one is a 4xx with a stable code on every backend."""
    for url in ("/v1/models?name_prefix=%00", "/v1/audit?actor=a%00b", "/v1/devices?label=site%3D%00"):
        r = api.client.get(url, headers=api.admin)
        assert r.status_code < 500, (url, r.text)
        assert r.status_code in (200, 404, 422), (url, r.text)
        if r.status_code == 422:
            assert _strict(r)["code"] in ("unstorable_value", "invalid_document"), r.text


@pytest.mark.parametrize("name", ["nan", "lone_surrogate", "nul", "not_utf8", "too_deep"])
def test_operator_calls_authenticate_before_the_body_is_read(api, name) -> None:
    bad = BAD_BODIES[name]
    r = api.client.post("/v1/models", content=bad, headers=JSON)
    assert (r.status_code, _strict(r)["code"]) == (401, "unauthenticated")
    r = api.client.post("/v1/models", content=bad, headers={**JSON, "Authorization": "Bearer wrong"})
    assert (r.status_code, _strict(r)["code"]) == (401, "unauthenticated")
    viewer = api.token("viewer")
    r = api.client.post("/v1/models", content=bad, headers={**JSON, **viewer})
    assert (r.status_code, _strict(r)["code"]) == (403, "permission_denied")
    r = api.client.post("/v1/models", content=bad, headers={**JSON, **api.admin})
    assert (r.status_code, _strict(r)["code"]) == (422, "malformed_json")
    assert api.count("models") == 0


def test_out_of_range_metadata_is_refused_not_stored_as_null(api, registry) -> None:
    body = (
        b'{"version": "2.0.0", "source_sha256": "' + registry["source_sha256"].encode() + b'", '
        b'"metadata": {"accuracy": 1e400, "fine": 0.5}}'
    )
    r = api.client.post("/v1/models/detector/versions", content=body, headers={**JSON, **api.admin})
    assert r.status_code == 422, r.text
    assert _strict(r)["code"] == "malformed_json"
    assert "out of range" in r.json()["details"]["got"]
    assert api.client.get("/v1/models/detector/versions/2.0.0", headers=api.admin).status_code == 404


@pytest.mark.parametrize("value", [b"NaN", b"Infinity", b"1e999"])
def test_device_telemetry_with_non_finite_numbers_is_refused(fleet, value) -> None:
    identity, ddir = fleet.enroll()
    batch = {
        "device_id": identity.device_id,
        "sent_at": fleet.clock().isoformat(),
        "records": [
            {
                "boot_id": "boot1",
                "sequence": 1,
                "kind": "window",
                "window": {
                    "start_at": fleet.clock().isoformat(),
                    "end_at": fleet.clock().isoformat(),
                    "models": [
                        {
                            "model_version": "digits/1.0.0",
                            "requests": 1,
                            "errors_by_code": {},
                            "shadow": {"compared": 1, "agreement_sum": 12345.5},
                        }
                    ],
                },
            }
        ],
    }
    raw = json.dumps(batch).replace("12345.5", value.decode()).encode()
    channel = fleet.channel(identity, ddir)
    with pytest.raises(EdgefleetError) as caught:
        channel.request(
            "POST", "/v1/device/telemetry", body_bytes=raw, headers={"content-type": "application/json"}
        )
    assert caught.value.code == "malformed_json"
    with fleet.app.state.context.db.session() as session:
        from sqlalchemy import text

        assert session.execute(text("select count(*) from telemetry_model_windows")).scalar_one() == 0


def test_device_calls_authenticate_before_the_body_is_read(fleet) -> None:
    r = fleet.client.post("/v1/device/report", content=BAD_BODIES["nan"], headers=JSON)
    assert r.status_code == 401
    assert _strict(r)["code"] == "unsigned_request"
