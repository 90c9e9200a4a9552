"""Wire documents every role shares. Imports stdlib, pydantic and cryptography only."""

from edgefleet.protocol.canonical import canonical_json, parse_json_bounded
from edgefleet.protocol.document import Document, is_safe_relpath
from edgefleet.protocol.errors import (
    AuthenticationError,
    ConflictError,
    EdgefleetError,
    InvalidDocumentError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitedError,
    ServiceUnavailableError,
    error_from_body,
)
from edgefleet.protocol.hardware_class import HardwareClass, parse_classes_toml
from edgefleet.protocol.manifest import ArtifactFile, ArtifactManifest

__all__ = [
    "ArtifactFile",
    "ArtifactManifest",
    "AuthenticationError",
    "ConflictError",
    "Document",
    "EdgefleetError",
    "HardwareClass",
    "InvalidDocumentError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitedError",
    "ServiceUnavailableError",
    "canonical_json",
    "error_from_body",
    "is_safe_relpath",
    "parse_classes_toml",
    "parse_json_bounded",
]
