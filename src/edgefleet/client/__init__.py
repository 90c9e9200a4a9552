"""Typed HTTP client for the control-plane API (used by the CLI, the simulator and tests)."""

from edgefleet.client.api import DEFAULT_TIMEOUT_S, EdgefleetClient
from edgefleet.client.artifact_dir import MANIFEST_FILENAME, load_artifact_dir, pull_artifact, push_artifact
from edgefleet.client.errors import IntegrityError, ServerUnreachableError
from edgefleet.client.resources import (
    ApplyResult,
    ArtifactInfo,
    AuditEntry,
    BlobInfo,
    Health,
    ModelInfo,
    Page,
    TokenInfo,
    VersionInfo,
)

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "MANIFEST_FILENAME",
    "ApplyResult",
    "ArtifactInfo",
    "AuditEntry",
    "BlobInfo",
    "EdgefleetClient",
    "Health",
    "IntegrityError",
    "ModelInfo",
    "Page",
    "ServerUnreachableError",
    "TokenInfo",
    "VersionInfo",
    "load_artifact_dir",
    "pull_artifact",
    "push_artifact",
]
