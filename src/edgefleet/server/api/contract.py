"""The published contract (``/openapi.json``) says what the server does: every status an operation can
answer, each error as ``{"code", "message", "details"}``, the media types it really sends; and ``Allow`` on a
405 names every method the path serves (not just the first route's).

Which statuses an operation can answer is judged here, once, from what the route is: the bearer role it
needs (401, and 403 when a viewer could be refused), its parameters and body (422; 400/413 for a body),
whether it writes (404 for what it references, 409 for a racing change), the device signature
(``/v1/device/...``), and the few statuses only some routes produce (:data:`EXTRA_STATUSES`). Every
database-backed operation can answer 503 ``database_unavailable``.

Documents the handler validates itself (hardware classes, artifact manifests: the body stays a dict so the
strict parser and the documents' own error codes apply) are declared with their model's real schema
(:func:`document_schema`), and every operation taking a body states the body size limit it is held to.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from re import Pattern
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from edgefleet.protocol import ArtifactManifest, HardwareClass
from edgefleet.protocol.desired_state import MAX_REPORT_BYTES
from edgefleet.protocol.probe import MAX_PROBE_RESULTS_BYTES
from edgefleet.server.api.json_body import role_of
from edgefleet.server.api.telemetry import MAX_COMPRESSED_BYTES
from edgefleet.server.services.tokens import Role

__all__ = [
    "DOCUMENT_MODELS",
    "EXTRA_STATUSES",
    "MEDIA_TYPES",
    "ROUTE_BODY_LIMITS",
    "AllowIndex",
    "BodyLimits",
    "document_schema",
    "error_statuses",
    "install_contract",
]

DOCUMENT_MODELS: tuple[type[BaseModel], ...] = (HardwareClass, ArtifactManifest)
"""Documents validated in the handler whose schemas :func:`declare` puts under ``components``."""
_REF = "#/components/schemas/{model}"
_MARK = "x-edgefleet-document"

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["code", "message", "details"],
    "properties": {
        "code": {"type": "string", "pattern": "^[a-z0-9_]+$", "description": "stable snake_case code"},
        "message": {"type": "string"},
        "details": {"type": "object", "description": "what was expected and what arrived"},
    },
}
_REASONS = {
    304: "Not modified (the ETag given in If-None-Match is current)",
    400: "Bad request (the client went away before the body was complete)",
    401: "Unauthenticated (missing, invalid or revoked credentials)",
    403: "Forbidden (the credentials lack the role, or the device is refused)",
    404: "Not found",
    409: "Conflict (exists, in use, or a concurrent change)",
    413: "Payload too large",
    416: "Range not satisfiable",
    422: "Invalid request (malformed_json, invalid_document or a more specific code)",
    429: "Too many requests (see Retry-After)",
    503: "Unavailable (database busy or unreachable, or a feature not configured; see Retry-After)",
}
_NO_BODY = {204, 304}
_WRITES = {"POST", "PUT", "PATCH", "DELETE"}
_RANGED = {206: "Partial content (Range)", 304: _REASONS[304], 416: _REASONS[416]}

EXTRA_STATUSES: dict[tuple[str, str], set[int]] = {
    ("POST", "/v1/enroll"): {401, 404, 409, 429},
    ("GET", "/v1/device/desired-state"): {304},
    ("GET", "/v1/fleet/health/history"): {404},  # an unknown class, version or site (history_unknown_*)
    ("GET", "/v1/blobs/{sha256}"): set(_RANGED),
    ("HEAD", "/v1/blobs/{sha256}"): set(_RANGED),
    ("GET", "/v1/artifacts/{artifact}/files/{path}"): set(_RANGED),
    ("HEAD", "/v1/artifacts/{artifact}/files/{path}"): set(_RANGED),
    ("GET", "/tuf/metadata/{name}"): set(_RANGED),
    ("HEAD", "/tuf/metadata/{name}"): set(_RANGED),
    ("GET", "/tuf/targets/{name}"): set(_RANGED),
    ("HEAD", "/tuf/targets/{name}"): set(_RANGED),
}
"""Statuses only these operations produce, beyond what :func:`error_statuses` derives."""

MEDIA_TYPES: dict[tuple[str, str], str] = {
    ("GET", "/metrics"): "text/plain",
    ("GET", "/v1/blobs/{sha256}"): "application/octet-stream",
    ("GET", "/v1/artifacts/{artifact}/files/{path}"): "application/octet-stream",
    ("GET", "/tuf/targets/{name}"): "application/octet-stream",
    ("GET", "/tuf/metadata/{name}"): "application/json",
}
"""Operations whose success body is not JSON built by FastAPI (the media type the server sends)."""

ROUTE_BODY_LIMITS: dict[tuple[str, str], int] = {
    ("POST", "/v1/device/report"): MAX_REPORT_BYTES,
    ("POST", "/v1/device/probes/{probe_id}/results"): MAX_PROBE_RESULTS_BYTES,
    ("POST", "/v1/device/telemetry"): MAX_COMPRESSED_BYTES,  # as sent (gzip or not)
}
"""Operations whose handler holds the body to a tighter limit than the server-wide one."""


def document_schema(model: type[BaseModel], *, many: bool = False) -> Callable[[dict[str, Any]], None]:
    """``json_schema_extra`` for a body field holding a ``model`` document (``many``: a list of them): the
    field stays ``dict`` for the parser and is marked; :func:`declare` turns the mark into a reference to the
    model's schema (pydantic itself cannot emit a reference to a schema it does not generate)."""
    if model not in DOCUMENT_MODELS:
        raise ValueError(f"{model.__name__} is not in DOCUMENT_MODELS")
    mark = {"type": "object", _MARK: model.__name__}

    def declare_field(schema: dict[str, Any]) -> None:
        if many:
            schema["items"] = mark
        else:
            schema.clear()
            schema.update(mark)

    return declare_field


def _refer_documents(node: Any) -> None:
    """Replace each document mark under ``node`` by the reference to the document's schema."""
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        if isinstance(child, dict) and _MARK in child:
            name = child.pop(_MARK)
            child.clear()
            child["$ref"] = _REF.format(model=name)
        else:
            _refer_documents(child)


@dataclass(frozen=True)
class BodyLimits:
    """The request body size limits the server enforces: ``max_json_bytes`` for every body (the body limit
    middleware), ``by_prefix`` for paths held to their own limit instead (blob uploads)."""

    max_json_bytes: int
    by_prefix: tuple[tuple[str, int], ...] = ()

    def of(self, method: str, path: str) -> int:
        """The largest body ``method`` on the ``path`` template accepts."""
        limit = next((n for prefix, n in self.by_prefix if path.startswith(prefix)), self.max_json_bytes)
        return min(limit, ROUTE_BODY_LIMITS.get((method, path), limit))


def _document_components() -> dict[str, Any]:
    _, schema = models_json_schema([(m, "validation") for m in DOCUMENT_MODELS], ref_template=_REF)
    return dict(schema.get("$defs", {}))


def _schema_path(route: APIRoute) -> str:
    return route.path_format


def error_statuses(route: APIRoute, method: str) -> set[int]:
    """Every non-success status ``method`` on ``route`` can answer (the one rule; see the module doc)."""
    path = _schema_path(route)
    statuses = {503}
    role = role_of(route.dependant)
    if role is not None:
        statuses.add(401)
        if role > Role.viewer:
            statuses.add(403)
    if path.startswith("/v1/device/"):
        statuses |= {401, 403, 404, 409, 413, 422, 429}  # 429: shed (api/admission.py)
    dependant = route.dependant
    if route.body_field is not None or dependant.path_params or dependant.query_params:
        statuses.add(422)
    if route.body_field is not None or method in ("POST", "PUT", "PATCH"):
        statuses |= {400, 413, 422}
    if dependant.path_params or method in _WRITES:
        statuses.add(404)
    if method in _WRITES:
        statuses.add(409)
    return statuses | EXTRA_STATUSES.get((method, path), set())


def _error_response(status: int) -> dict[str, Any]:
    if status in _NO_BODY or status == 206:
        return {"description": _RANGED.get(status, _REASONS.get(status, ""))}
    return {
        "description": _REASONS.get(status, "Error"),
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _limit_sentence(max_bytes: int) -> str:
    return f"Request bodies over {max_bytes} bytes are refused with 413 `payload_too_large`."


def declare(schema: dict[str, Any], routes: Iterable[APIRoute], limits: BodyLimits) -> dict[str, Any]:
    """Rewrite the generated operations of ``schema`` in place: our error shape for every declared error
    status (FastAPI's default 422 body is not ours), the real media types of non-JSON answers, the document
    schemas under ``components``, and the body size limit in the description of each operation with a 413."""
    schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    schemas = schema["components"]["schemas"]
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    for name, component in _document_components().items():
        if schemas.setdefault(name, component) != component:
            raise RuntimeError(f"two different schemas are named {name!r} in the contract")
    _refer_documents(schema)
    for route in routes:
        path = _schema_path(route)
        for method in route.methods or ():
            operation = schema["paths"].get(path, {}).get(method.lower())
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            statuses = error_statuses(route, method)
            for status in sorted(statuses):
                responses[str(status)] = _error_response(status)
            if 413 in statuses:
                sentence = _limit_sentence(limits.of(method, path))
                text = operation.get("description", "")
                operation["description"] = f"{text}\n\n{sentence}" if text else sentence
            media = MEDIA_TYPES.get((method, path))
            for status, response in responses.items():
                if not status.startswith("2") or status == "204":
                    continue
                if method == "HEAD":
                    response.pop("content", None)
                elif media is not None:
                    response["content"] = {media: {"schema": {"type": "string"}}}
    return schema


@dataclass(frozen=True)
class AllowIndex:
    """Which methods each API path serves, for ``Allow`` on a 405 (Starlette names only the methods of the
    first route whose path matched)."""

    entries: tuple[tuple[Pattern[str], int, frozenset[str]], ...]

    @classmethod
    def of(cls, routes: Iterable[APIRoute]) -> AllowIndex:
        merged: dict[str, tuple[Pattern[str], int, set[str]]] = {}
        for route in routes:
            params = route.path_format.count("{")
            _, _, methods = merged.setdefault(route.path_regex.pattern, (route.path_regex, params, set()))
            methods |= route.methods or set()
        return cls(tuple((pattern, n, frozenset(methods)) for pattern, n, methods in merged.values()))

    def allow(self, path: str) -> str | None:
        """The methods of the most specific templates matching ``path`` (``/v1/classes/apply`` is the
        apply path, not a class called ``apply``), as the contract lists them."""
        matching = [(n, served) for pattern, n, served in self.entries if pattern.match(path)]
        if not matching:
            return None
        fewest = min(n for n, _ in matching)
        methods = set().union(*(served for n, served in matching if n == fewest))
        return ", ".join(sorted(methods))


def install_contract(app: FastAPI, routes: list[APIRoute], limits: BodyLimits) -> None:
    """Serve the declared contract as ``/openapi.json`` and keep the allow index on ``app.state``."""

    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()  # FastAPI's, cached until the routes change
        if "Error" not in schema.get("components", {}).get("schemas", {}):
            declare(schema, routes, limits)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.state.allow_index = AllowIndex.of(routes)
