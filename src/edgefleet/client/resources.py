"""Typed views of the control plane's JSON answers (docs/api.md). Unknown fields are kept."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ApplyResult",
    "ArtifactInfo",
    "AuditEntry",
    "BlobInfo",
    "Health",
    "ModelInfo",
    "Page",
    "TokenInfo",
    "VersionInfo",
]

T = TypeVar("T")


class _Resource(BaseModel):
    model_config = ConfigDict(extra="allow")


class Page(_Resource, Generic[T]):
    items: list[T]
    total: int
    limit: int = 50
    offset: int = 0


class Health(_Resource):
    status: str
    version: str = ""
    database: str = ""


class ApplyResult(_Resource):
    created: list[str] = Field(default_factory=list)
    updated: list[str] = Field(default_factory=list)
    unchanged: list[str] = Field(default_factory=list)


class ModelInfo(_Resource):
    name: str
    description: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    created_at: str | None = None
    version_count: int = 0


class VersionInfo(_Resource):
    model: str
    version: str
    source_sha256: str
    source_length: int | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: str | None = None


class BlobInfo(_Resource):
    sha256: str
    length: int


class ArtifactInfo(_Resource):
    id: str
    model: str
    version: str
    hardware_class: str
    manifest_sha256: str
    release_counter: int
    disabled: bool = False
    created_at: str | None = None
    manifest: dict[str, Any] = Field(default_factory=dict)


class TokenInfo(_Resource):
    id: str | int
    name: str
    role: str
    created_at: str | None = None
    token: str | None = Field(default=None, description="the secret, present only in the create answer")


class AuditEntry(_Resource):
    id: str | int
    at: str
    actor: str | None = None
    action: str
    target: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)
