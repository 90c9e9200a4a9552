"""The error hierarchy every role shares.

Every user-facing error has a stable snake_case ``code`` (part of the API: clients, dashboards and
telemetry key on it), a human message, and ``details`` saying what was expected and what arrived.
The HTTP status a server maps an error to lives here too, so client and server agree.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AuthenticationError",
    "ConflictError",
    "EdgefleetError",
    "InvalidDocumentError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitedError",
    "ServiceUnavailableError",
    "error_from_body",
]


class EdgefleetError(Exception):
    """Root of every error edgefleet raises on purpose."""

    code: ClassVar[str] = "edgefleet_error"
    http_status: ClassVar[int] = 500

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        expected: Any = None,
        got: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code  # type: ignore[misc]  # a more specific code within the class
        self.details: dict[str, Any] = dict(details or {})
        if expected is not None:
            self.details.setdefault("expected", expected)
        if got is not None:
            self.details.setdefault("got", got)

    def to_body(self) -> dict[str, Any]:
        """The wire form: ``{"code", "message", "details"}``."""
        return {"code": self.code, "message": self.message, "details": self.details}

    def __str__(self) -> str:
        extra = ""
        if "expected" in self.details or "got" in self.details:
            extra = f" (expected {self.details.get('expected')!r}, got {self.details.get('got')!r})"
        return f"[{self.code}] {self.message}{extra}"


class InvalidDocumentError(EdgefleetError):
    """A document, request body or file did not validate."""

    code = "invalid_document"
    http_status = 422


class NotFoundError(EdgefleetError):
    code = "not_found"
    http_status = 404


class ConflictError(EdgefleetError):
    code = "conflict"
    http_status = 409


class AuthenticationError(EdgefleetError):
    code = "unauthenticated"
    http_status = 401


class PermissionDeniedError(EdgefleetError):
    code = "permission_denied"
    http_status = 403


class PayloadTooLargeError(EdgefleetError):
    code = "payload_too_large"
    http_status = 413


class RateLimitedError(EdgefleetError):
    code = "rate_limited"
    http_status = 429


class ServiceUnavailableError(EdgefleetError):
    code = "service_unavailable"
    http_status = 503


_BY_STATUS: dict[int, type[EdgefleetError]] = {
    cls.http_status: cls
    for cls in (
        InvalidDocumentError,
        NotFoundError,
        ConflictError,
        AuthenticationError,
        PermissionDeniedError,
        PayloadTooLargeError,
        RateLimitedError,
        ServiceUnavailableError,
    )
}


def error_from_body(status: int, body: Any) -> EdgefleetError:
    """Rebuild an error from an HTTP error body, keeping its exact ``code``."""
    cls = _BY_STATUS.get(status, EdgefleetError)
    if isinstance(body, dict) and isinstance(body.get("code"), str):
        details = body.get("details") if isinstance(body.get("details"), dict) else {}
        return cls(str(body.get("message", "")), code=body["code"], details=details)
    return cls(f"HTTP {status} without an edgefleet error body", code=cls.code, details={"status": status})
