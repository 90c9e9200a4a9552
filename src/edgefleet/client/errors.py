"""Errors the client raises on its own (the server's errors come back via ``error_from_body``)."""

from __future__ import annotations

from edgefleet.protocol.errors import EdgefleetError, InvalidDocumentError

__all__ = ["IntegrityError", "ServerUnreachableError"]


class ServerUnreachableError(EdgefleetError):
    """The server could not be reached or the connection broke (DNS, refused, timeout, reset)."""

    code = "server_unreachable"
    http_status = 503


class IntegrityError(InvalidDocumentError):
    """Bytes did not match what was promised (sha256 or length); nothing was kept."""

    code = "sha256_mismatch"
