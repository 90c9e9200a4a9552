"""Errors only the control plane raises, on top of ``edgefleet.protocol.errors``.

Most server errors are protocol errors with a more specific ``code`` (``class_not_found`` is a
``NotFoundError``); the classes here cover the HTTP statuses the protocol has no class for.
"""

from __future__ import annotations

from edgefleet.protocol.errors import EdgefleetError

__all__ = ["ConfigurationError", "InternalError", "RangeNotSatisfiableError"]


class ConfigurationError(EdgefleetError):
    """The server's settings are unusable or insecure; raised before anything listens."""

    code = "invalid_configuration"
    http_status = 500


class RangeNotSatisfiableError(EdgefleetError):
    """A ``Range`` header asked for bytes beyond the end of a blob."""

    code = "range_not_satisfiable"
    http_status = 416


class InternalError(EdgefleetError):
    """An unexpected failure; the body never carries internals."""

    code = "internal_error"
    http_status = 500
