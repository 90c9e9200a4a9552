"""Form posts: a bounded ``application/x-www-form-urlencoded`` body, checked for CSRF and origin."""

from __future__ import annotations

import hmac
from urllib.parse import parse_qsl, urlsplit

from fastapi import Request

from edgefleet.protocol.errors import InvalidDocumentError, PayloadTooLargeError, PermissionDeniedError

__all__ = ["MAX_FIELDS", "MAX_FORM_BYTES", "check_csrf", "check_origin", "read_form"]

MAX_FORM_BYTES = 16 * 1024
MAX_FIELDS = 16
FORM_TYPE = "application/x-www-form-urlencoded"


async def read_form(request: Request, *, max_bytes: int = MAX_FORM_BYTES) -> dict[str, str]:
    """The posted fields; refuses other content types, oversized bodies and repeated fields."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != FORM_TYPE:
        raise InvalidDocumentError(
            "expected a form post", code="unsupported_media_type", expected=FORM_TYPE, got=content_type[:80]
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise PayloadTooLargeError(
                "form too large", expected=f"<= {max_bytes} bytes", got=f"> {max_bytes}"
            )
    try:
        pairs = parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=MAX_FIELDS
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidDocumentError("malformed form body", code="invalid_form", got=str(exc)[:80]) from exc
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form:
            raise InvalidDocumentError("a form field was repeated", code="invalid_form", got=key[:80])
        if "\x00" in key or "\x00" in value:  # no database stores it (PostgreSQL refuses NUL in text)
            raise InvalidDocumentError(
                "a form field holds a NUL character", code="invalid_form", expected="text", got=key[:80]
            )
        form[key] = value
    return form


def check_csrf(form: dict[str, str], expected: str) -> None:
    """The form's ``csrf`` field must equal the session's token (constant-time)."""
    presented = form.get("csrf", "")
    if not expected or not hmac.compare_digest(presented.encode(), expected.encode()):
        raise PermissionDeniedError(
            "the form's CSRF token is missing or stale; reload the page and try again",
            code="csrf_failed",
            expected="the token of this session",
            got="missing" if not presented else "another token",
        )


def check_origin(request: Request) -> None:
    """Browsers send ``Origin`` on posts; when present it must be this server (defence in depth)."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    parts = urlsplit(origin)
    host = request.headers.get("host", "")
    if parts.netloc != host:
        raise PermissionDeniedError(
            "cross-origin form post refused", code="csrf_failed", expected=host, got=origin[:120]
        )
