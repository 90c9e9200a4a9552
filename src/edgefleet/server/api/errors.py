"""Every error leaves the server as ``{"code", "message", "details"}`` with a stable code."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from edgefleet.protocol.errors import EdgefleetError
from edgefleet.server.api.id_paths import malformed_id
from edgefleet.server.errors import RangeNotSatisfiableError

__all__ = ["error_response", "install_error_handlers", "retry_after_header", "validation_errors"]

log = logging.getLogger("edgefleet.server")
_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    415: "unsupported_media_type",
}
_MAX_ERRORS = 50


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        {"code": code, "message": message, "details": details or {}}, status_code=status, headers=headers
    )


def _got(value: Any) -> Any:
    """What arrived, safe to put in a strict JSON response: text cut to 200 characters with any lone
    surrogate escaped, a non-finite number as its name, anything bigger as its type."""
    if isinstance(value, str):
        return value[:200].encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    return type(value).__name__


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in list(exc.errors())[:_MAX_ERRORS]:
        loc = [str(p) for p in err.get("loc", ())]
        if loc and loc[0] == "body":
            loc = loc[1:]
        out.append(
            {"field": ".".join(loc) or "body", "expected": err.get("msg", ""), "got": _got(err.get("input"))}
        )
    return out


def retry_after_header(retry_after_s: Any) -> str:
    """``Retry-After`` in whole seconds (rounded up, at least 1) from ``details.retry_after_s``; 1 when the
    error gives no usable number."""
    if isinstance(retry_after_s, bool) or not isinstance(retry_after_s, int | float):
        return "1"
    if not math.isfinite(retry_after_s):
        return "1"
    return str(max(1, math.ceil(retry_after_s)))


async def _edgefleet(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, EdgefleetError)
    headers: dict[str, str] = {}
    if exc.http_status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if exc.http_status == 429:
        headers["Retry-After"] = retry_after_header(exc.details.get("retry_after_s"))
    if isinstance(exc, RangeNotSatisfiableError):
        headers["Content-Range"] = f"bytes */{exc.details.get('size', 0)}"
    if exc.http_status >= 500:
        log.error("server error %s: %s", exc.code, exc)
    return JSONResponse(exc.to_body(), status_code=exc.http_status, headers=headers)


async def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = validation_errors(exc)
    if any(e.get("type") == "json_invalid" for e in exc.errors()):
        return error_response(
            422,
            "malformed_json",
            "request body is not valid JSON",
            {"expected": "JSON", "got": errors[0]["expected"] if errors else "?"},
        )
    first = errors[0] if errors else {"field": "?", "expected": "?"}
    return error_response(
        422, "invalid_document", f"invalid request: {first['field']}: {first['expected']}", {"errors": errors}
    )


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404 and (malformed := malformed_id(request.url.path)) is not None:
        return await _edgefleet(request, malformed)  # a typo in an id is not a missing object
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    headers = dict(exc.headers or {})
    index = getattr(request.app.state, "allow_index", None)
    if exc.status_code == 405 and index is not None:
        headers["Allow"] = index.allow(request.url.path) or headers.get("Allow", "")
    return error_response(exc.status_code, code, str(exc.detail), headers=headers or None)


async def _integrity(_: Request, exc: Exception) -> JSONResponse:
    log.info("integrity conflict: %s", exc)
    return error_response(409, "conflict", "a concurrent change conflicted with this one; retry")


async def _data(_: Request, exc: Exception) -> JSONResponse:
    log.info("value refused by the database: %s", exc)
    return error_response(
        422,
        "unstorable_value",
        "a value in the request cannot be stored (e.g. a NUL character in a text, a number out of range)",
        {"expected": "text without NUL characters and numbers within the column's range", "got": "refused"},
    )


async def _operational(_: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable: %s", exc)
    return error_response(
        503,
        "database_unavailable",
        "the database is busy or unreachable; retry later",
        headers={"Retry-After": "1"},
    )


async def _disconnect(_: Request, __: Exception) -> JSONResponse:
    return error_response(400, "client_disconnected", "the client went away before the body was complete")


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error", exc_info=exc)
    return error_response(500, "internal_error", "unexpected server error; see the server log")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(EdgefleetError, _edgefleet)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(IntegrityError, _integrity)
    app.add_exception_handler(OperationalError, _operational)
    app.add_exception_handler(DataError, _data)
    app.add_exception_handler(ClientDisconnect, _disconnect)
    app.add_exception_handler(Exception, _unexpected)
