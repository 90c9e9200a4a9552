"""The published contract says what the server does (issue 14, item 7)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from edgefleet.protocol import ArtifactFile, ArtifactManifest, HardwareClass
from edgefleet.protocol.errors import PayloadTooLargeError

ERROR_REF = {"$ref": "#/components/schemas/Error"}
JSON_BODY = {"content-type": "application/json"}


@pytest.fixture
def spec(api) -> dict:
    return api.client.get("/openapi.json").json()


def _statuses(spec, method: str, path: str) -> set[str]:
    return set(spec["paths"][path][method]["responses"])


def test_every_error_is_declared_in_our_shape(spec) -> None:
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path, item in spec["paths"].items():
        for method, op in item.items():
            for status, response in op["responses"].items():
                if status.startswith(("4", "5")):
                    assert response["content"]["application/json"]["schema"] == ERROR_REF, (method, path)


@pytest.mark.parametrize(
    ("method", "path", "must", "must_not"),
    [
        ("post", "/v1/models", {"201", "400", "401", "403", "404", "409", "413", "422", "503"}, set()),
        ("get", "/v1/models", {"200", "401", "422", "503"}, {"403", "404", "409", "413"}),
        ("delete", "/v1/models/{name}", {"204", "401", "403", "404", "409", "422"}, set()),
        ("post", "/v1/tokens", {"201", "401", "403", "409", "422"}, set()),
        ("get", "/v1/tokens", {"200", "401", "403"}, {"422"}),
        ("post", "/v1/enroll", {"201", "401", "413", "422", "429"}, {"403"}),
        ("get", "/v1/device/desired-state", {"200", "304", "401", "403"}, set()),
        ("post", "/v1/device/telemetry", {"200", "401", "413", "422"}, set()),
        ("get", "/v1/blobs/{sha256}", {"200", "206", "304", "404", "416"}, set()),
        ("get", "/tuf/targets/{name}", {"200", "206", "304", "404", "416"}, {"401"}),
    ],
)
def test_each_operation_declares_what_it_can_answer(spec, method, path, must, must_not) -> None:
    declared = _statuses(spec, method, path)
    assert must <= declared, must - declared
    assert not (must_not & declared), must_not & declared


def test_non_json_answers_declare_their_media_type(spec) -> None:
    assert set(spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == {"text/plain"}
    target = spec["paths"]["/tuf/targets/{name}"]["get"]["responses"]["200"]["content"]
    assert set(target) == {"application/octet-stream"}
    assert "content" not in spec["paths"]["/tuf/targets/{name}"]["head"]["responses"]["200"]


def test_metrics_are_served_as_declared(api) -> None:
    r = api.client.get("/metrics", headers=api.admin)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        ("/v1/models", "GET, POST"),
        ("/v1/models/detector", "DELETE, GET, PATCH"),
        ("/v1/classes/apply", "POST"),
        ("/v1/classes/cpu-small", "DELETE, GET, PUT"),
        ("/tuf/targets/a/b.onnx", "GET, HEAD"),
        ("/v1/artifacts/check", "POST"),
        ("/v1/artifacts/art_0123456789abcdef", "DELETE, GET, PATCH"),
    ],
)
def test_options_and_undeclared_methods_answer_405_with_every_served_method(api, path, allow) -> None:
    for method in ("OPTIONS", "TRACE"):
        r = api.client.request(method, path, headers=api.admin)
        assert r.status_code == 405, (method, path, r.text)
        assert r.headers["allow"] == allow
        assert r.json()["code"] == "method_not_allowed"


def test_an_id_that_is_not_an_artifact_id_does_not_route_to_an_artifact(api) -> None:
    r = api.client.patch("/v1/artifacts/check", json={"disabled": True}, headers=api.admin)
    assert (r.status_code, r.headers["allow"]) == (405, "POST")
    r = api.client.get("/v1/artifacts/nope", headers=api.admin)  # a malformed id, not a missing artifact
    assert (r.status_code, r.json()["code"]) == (422, "invalid_artifact_id")
    assert r.json()["details"] == {"expected": "art_<16 hex>", "got": "nope"}


def test_every_api_route_reads_its_body_strictly() -> None:
    """A router added without ``route_class=StrictJsonRoute`` would take NaN and surrogates again."""
    from fastapi.routing import APIRoute

    from edgefleet.server.api.json_body import StrictJsonRoute
    from edgefleet.server.app import ROUTERS

    routes = [
        r for router in ROUTERS for r in router.routes if isinstance(r, APIRoute) and r.include_in_schema
    ]
    assert routes
    assert [r.path for r in routes if not isinstance(r, StrictJsonRoute)] == []


def test_no_two_routes_take_the_same_request() -> None:
    """The app matches routes in ``ROUTERS`` order (device channel first, for speed): that is safe only
    while no request fits two routes, so the order decides nothing but the time to find one."""
    import re

    from fastapi.routing import APIRoute

    from edgefleet.server.app import ROUTERS

    routes = [r for router in ROUTERS for r in router.routes if isinstance(r, APIRoute)]
    both = []
    for sample in ("x", "1", "relabel", "dev_0123456789abcdef0123", "art_0123456789abcdef"):
        for a in routes:
            path = re.sub(r"\{[^}]+\}", sample, a.path)
            fits = [b.path for b in routes if b.methods & a.methods and b.path_regex.match(path)]
            if len(fits) > 1:
                both.append((sorted(a.methods), path, fits))
    assert both == []


def _required(model: type[BaseModel]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items() if field.is_required()}


def _resolve(spec: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _body_schema(spec: dict, method: str, path: str) -> dict:
    body = spec["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
    return _resolve(spec, body)


def test_class_documents_are_declared_with_the_models_schema(spec) -> None:
    put = _body_schema(spec, "put", "/v1/classes/{name}")
    assert set(put["required"]) == _required(HardwareClass) >= {"name", "budgets", "performance"}
    assert put["properties"]["name"]["pattern"] == "^[a-z0-9][a-z0-9._-]{0,62}$"
    assert put["additionalProperties"] is True  # unknown fields are kept
    budgets = _resolve(spec, put["properties"]["budgets"])
    assert {"ram_mb", "storage_mb", "max_model_mb"} <= set(budgets["required"])
    apply = _body_schema(spec, "post", "/v1/classes/apply")["properties"]["classes"]
    assert _resolve(spec, apply["items"]) == put
    assert apply["minItems"] == 1


@pytest.mark.parametrize("path", ["/v1/artifacts", "/v1/artifacts/check"])
def test_artifact_manifests_are_declared_with_the_models_schema(spec, path) -> None:
    manifest = _resolve(spec, _body_schema(spec, "post", path)["properties"]["manifest"])
    assert set(manifest["required"]) == _required(ArtifactManifest) >= {"model", "version", "files"}
    assert manifest["properties"]["hardware_class"]["pattern"] == "^[a-z0-9][a-z0-9._-]{0,62}$"
    files = manifest["properties"]["files"]
    assert set(_resolve(spec, files["items"])["required"]) == _required(ArtifactFile) >= {"path", "sha256"}


def test_a_document_the_declared_schema_refuses_is_refused_with_its_code(api) -> None:
    r = api.client.put("/v1/classes/cpu-small", json={"name": "cpu-small"}, headers=api.admin)
    assert r.status_code == 422
    assert r.json()["code"] == "invalid_document"


@pytest.mark.parametrize(
    ("method", "path", "max_bytes"),
    [
        ("put", "/v1/classes/{name}", 2 * 1024**2),
        ("post", "/v1/artifacts", 2 * 1024**2),
        ("post", "/v1/models", 2 * 1024**2),
        ("put", "/v1/blobs/{sha256}", 4 * 1024**3),
        ("post", "/v1/device/report", 64_000),
        ("post", "/v1/device/telemetry", 1024**2),
    ],
)
def test_the_body_limit_is_stated_where_a_body_is_taken(spec, method, path, max_bytes) -> None:
    op = spec["paths"][path][method]
    assert "413" in op["responses"]
    assert f"Request bodies over {max_bytes} bytes are refused with 413" in op["description"]


def test_the_stated_limit_is_the_configured_one(make_api) -> None:
    api = make_api(max_json_bytes=4096)
    op = api.client.get("/openapi.json").json()["paths"]["/v1/classes/apply"]["post"]
    assert "Request bodies over 4096 bytes are refused with 413" in op["description"]
    r = api.client.post("/v1/classes/apply", content=b"{" + b" " * 5000 + b"}", headers=api.admin)
    assert r.status_code == 413
    assert r.json()["code"] == "payload_too_large"
    assert "description" not in api.client.get("/openapi.json").json()["paths"]["/v1/models"]["get"]


def test_a_device_report_over_its_stated_limit_is_a_413(fleet) -> None:
    identity, ddir = fleet.enroll()
    channel = fleet.channel(identity, ddir)
    with pytest.raises(PayloadTooLargeError) as caught:
        channel.request("POST", "/v1/device/report", body_bytes=b" " * 64_001, headers=JSON_BODY)
    assert caught.value.code == "payload_too_large"
    assert caught.value.details["expected"] == "<= 64000 bytes"
    assert caught.value.details["got"] == 64_001
