"""A typed client for the control-plane HTTP API (docs/api.md): one method per call.

Over 450 lines: one typed method per call of the API (the rollout calls are in ``client.rollouts``); split by
resource, the methods would still share one transport and one mapping of error answers.

Error answers come back as the matching ``EdgefleetError`` subclass with the server's ``code``; network
failures become ``ServerUnreachableError`` (``server_unreachable``). The transport is injectable so
tests can run against the real ASGI app or inject faults.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from edgefleet import __version__
from edgefleet.client.agent_config import ConfigApi
from edgefleet.client.alerts import AlertsApi
from edgefleet.client.devices import DevicesApi
from edgefleet.client.errors import ServerUnreachableError
from edgefleet.client.probes import ProbesApi
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
from edgefleet.client.rollouts import RolloutsApi
from edgefleet.client.telemetry import TelemetryApi
from edgefleet.client.transfer import (
    ProgressCallback,
    download_verified,
    file_sha256,
    iter_file,
    raise_for_error,
)
from edgefleet.client.tuf import TufApi
from edgefleet.protocol.document import NAME_PATTERN, is_safe_relpath, validation_details
from edgefleet.protocol.errors import EdgefleetError, InvalidDocumentError
from edgefleet.protocol.hardware_class import HardwareClass
from edgefleet.protocol.manifest import ArtifactManifest

__all__ = ["DEFAULT_TIMEOUT_S", "MAX_PAGE_LIMIT", "EdgefleetClient"]

DEFAULT_TIMEOUT_S = 30.0
MAX_PAGE_LIMIT = 500
_ID_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
_ARTIFACT_ID = re.compile(r"^art_[0-9a-f]{16}$")
R = TypeVar("R", bound=BaseModel)


def _name(value: str, what: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(NAME_PATTERN, value):
        raise InvalidDocumentError(
            f"invalid {what} name {value!r}", code="invalid_name", expected=NAME_PATTERN, got=value
        )
    return value


def _ident(value: str | int, what: str) -> str:
    text = str(value)
    if not _ID_PATTERN.fullmatch(text):
        raise InvalidDocumentError(
            f"invalid {what} {text!r}", code="invalid_name", expected=_ID_PATTERN.pattern, got=text
        )
    return text


def artifact_id_checked(value: str) -> str:
    """An artifact id as the server makes them, refused before any request like rollout and device ids
    (``invalid_artifact_id``), so a typo is not answered as a missing artifact."""
    if not isinstance(value, str) or not _ARTIFACT_ID.fullmatch(value):
        raise InvalidDocumentError(
            "invalid artifact id", code="invalid_artifact_id", expected="art_<16 hex>", got=str(value)[:80]
        )
    return value


def _sha(value: str) -> str:
    if not isinstance(value, str) or not _SHA256_PATTERN.fullmatch(value):
        raise InvalidDocumentError(
            "invalid sha256", code="invalid_sha256", expected="64 hex digits", got=value
        )
    return value


def _parse(model: type[R], data: Any) -> R:
    """Validate an answer; a shape we do not understand is our error, not pydantic's."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise EdgefleetError(
            f"unexpected answer from the server for {model.__name__}",
            code="unexpected_response",
            details={"errors": validation_details(exc)},
        ) from exc


def _params(**values: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        out[key] = ("true" if value else "false") if isinstance(value, bool) else value
    return out


class EdgefleetClient(DevicesApi, ConfigApi, TufApi, TelemetryApi, RolloutsApi, ProbesApi, AlertsApi):
    """Synchronous client. Use as a context manager or call ``close()``."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        headers = {"User-Agent": f"edgefleet-client/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            transport=transport,
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=False,
        )

    # -- plumbing ---------------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> EdgefleetClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServerUnreachableError(
                f"cannot reach the edgefleet server at {self.base_url}: {exc}",
                details={"url": f"{self.base_url}{path}"},
                expected="an HTTP answer",
                got=f"{type(exc).__name__}: {exc}",
            ) from exc
        raise_for_error(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise InvalidDocumentError(
                f"server answered {method} {path} with non-JSON",
                code="malformed_json",
                expected="JSON",
                got=response.text[:200],
            ) from exc

    def _page(self, model: type[R], path: str, params: Mapping[str, Any]) -> Page[R]:
        return _parse(Page[model], self._json("GET", path, params=params))  # type: ignore[valid-type]

    def _iter_all(self, fetch: Any, page_size: int = MAX_PAGE_LIMIT) -> Iterator[Any]:
        offset = 0
        while True:
            page = fetch(limit=page_size, offset=offset)
            yield from page.items
            offset += len(page.items)
            if not page.items or offset >= page.total:
                return

    # -- health -----------------------------------------------------------------------------------

    def health(self) -> Health:
        return _parse(Health, self._json("GET", "/healthz"))

    # -- hardware classes -------------------------------------------------------------------------

    def list_classes(self, *, limit: int = 50, offset: int = 0) -> Page[HardwareClass]:
        raw = _parse(
            Page[dict[str, Any]], self._json("GET", "/v1/classes", params=_params(limit=limit, offset=offset))
        )
        items = [HardwareClass.parse(item) for item in raw.items]
        return Page[HardwareClass](items=items, total=raw.total, limit=raw.limit, offset=raw.offset)

    def iter_classes(self) -> Iterator[HardwareClass]:
        return self._iter_all(self.list_classes)

    def get_class(self, name: str) -> HardwareClass:
        return HardwareClass.parse(self._json("GET", f"/v1/classes/{_name(name, 'class')}"))

    def put_class(self, hardware_class: HardwareClass) -> HardwareClass:
        name = _name(hardware_class.name, "class")
        return HardwareClass.parse(self._json("PUT", f"/v1/classes/{name}", json=hardware_class.to_dict()))

    def apply_classes(self, classes: Iterable[HardwareClass]) -> ApplyResult:
        body = {"classes": [c.to_dict() for c in classes]}
        return _parse(ApplyResult, self._json("POST", "/v1/classes/apply", json=body))

    def delete_class(self, name: str) -> None:
        self._json("DELETE", f"/v1/classes/{_name(name, 'class')}")

    # -- models and versions ----------------------------------------------------------------------

    def create_model(
        self, name: str, *, description: str | None = None, labels: Mapping[str, str] | None = None
    ) -> ModelInfo:
        body: dict[str, Any] = {"name": _name(name, "model")}
        if description is not None:
            body["description"] = description
        if labels is not None:
            body["labels"] = dict(labels)
        return _parse(ModelInfo, self._json("POST", "/v1/models", json=body))

    def list_models(
        self, *, name_prefix: str | None = None, limit: int = 50, offset: int = 0
    ) -> Page[ModelInfo]:
        return self._page(
            ModelInfo, "/v1/models", _params(name_prefix=name_prefix, limit=limit, offset=offset)
        )

    def get_model(self, name: str) -> ModelInfo:
        return _parse(ModelInfo, self._json("GET", f"/v1/models/{_name(name, 'model')}"))

    def update_model(
        self, name: str, *, description: str | None = None, labels: Mapping[str, str] | None = None
    ) -> ModelInfo:
        body: dict[str, Any] = {}
        if description is not None:
            body["description"] = description
        if labels is not None:
            body["labels"] = dict(labels)
        return _parse(ModelInfo, self._json("PATCH", f"/v1/models/{_name(name, 'model')}", json=body))

    def delete_model(self, name: str) -> None:
        self._json("DELETE", f"/v1/models/{_name(name, 'model')}")

    def create_version(
        self, model: str, version: str, *, source_sha256: str, metadata: Mapping[str, Any] | None = None
    ) -> VersionInfo:
        body: dict[str, Any] = {"version": _name(version, "version"), "source_sha256": _sha(source_sha256)}
        if metadata is not None:
            body["metadata"] = dict(metadata)
        path = f"/v1/models/{_name(model, 'model')}/versions"
        return _parse(VersionInfo, self._json("POST", path, json=body))

    def add_version_from_file(
        self,
        model: str,
        version: str,
        source: Path,
        *,
        metadata: Mapping[str, Any] | None = None,
        progress: ProgressCallback | None = None,
    ) -> VersionInfo:
        """Upload ``source`` as a blob, then register the version pointing at it."""
        blob = self.upload_blob(source, progress=progress)
        return self.create_version(model, version, source_sha256=blob.sha256, metadata=metadata)

    def list_versions(self, model: str, *, limit: int = 50, offset: int = 0) -> Page[VersionInfo]:
        path = f"/v1/models/{_name(model, 'model')}/versions"
        return self._page(VersionInfo, path, _params(limit=limit, offset=offset))

    def get_version(self, model: str, version: str) -> VersionInfo:
        path = f"/v1/models/{_name(model, 'model')}/versions/{_name(version, 'version')}"
        return _parse(VersionInfo, self._json("GET", path))

    def delete_version(self, model: str, version: str) -> None:
        self._json("DELETE", f"/v1/models/{_name(model, 'model')}/versions/{_name(version, 'version')}")

    # -- blobs ------------------------------------------------------------------------------------

    def blob_length(self, sha256: str) -> int | None:
        """The stored length of a blob, or ``None`` when the server does not have it."""
        try:
            response = self._http.head(f"/v1/blobs/{_sha(sha256)}")
        except httpx.TransportError as exc:
            raise ServerUnreachableError(
                f"cannot reach the edgefleet server at {self.base_url}: {exc}",
                expected="an HTTP answer",
                got=f"{type(exc).__name__}: {exc}",
            ) from exc
        if response.status_code == 404:
            return None
        raise_for_error(response)
        return int(response.headers.get("content-length", "0"))

    def upload_blob(
        self,
        source: Path,
        *,
        sha256: str | None = None,
        progress: ProgressCallback | None = None,
        skip_existing: bool = True,
        verified_length: int | None = None,
    ) -> BlobInfo:
        """Stream a file to the blob store. The sha256 is computed first unless given (then checked).

        ``verified_length`` with ``sha256``: the caller has just hashed the file (``push_artifact`` did, from
        the manifest), so it is not read twice; the server still verifies the sha256 while it streams."""
        source = Path(source)
        if sha256 is not None and verified_length is not None:
            digest, length = _sha(sha256), verified_length
        else:
            digest, length = file_sha256(source)
        if sha256 is not None and _sha(sha256) != digest:
            raise InvalidDocumentError(
                f"{source.name} does not match the promised sha256",
                code="sha256_mismatch",
                expected=sha256,
                got=digest,
            )
        if skip_existing and self.blob_length(digest) == length:
            if progress is not None:
                progress(length)
            return BlobInfo(sha256=digest, length=length)
        data = self._json(
            "PUT",
            f"/v1/blobs/{digest}",
            content=iter_file(source, progress=progress),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(length)},
        )
        return _parse(BlobInfo, data)

    def upload_blob_bytes(self, data: bytes, *, sha256: str) -> BlobInfo:
        """Upload in-memory bytes under the sha256 the caller claims (the server verifies it)."""
        return _parse(
            BlobInfo,
            self._json(
                "PUT",
                f"/v1/blobs/{_sha(sha256)}",
                content=data,
                headers={"Content-Type": "application/octet-stream"},
            ),
        )

    def download_blob(
        self,
        sha256: str,
        dest: Path,
        *,
        length: int,
        progress: ProgressCallback | None = None,
        max_attempts: int = 5,
    ) -> Path:
        return download_verified(
            self._http,
            f"/v1/blobs/{_sha(sha256)}",
            Path(dest),
            sha256=sha256,
            length=length,
            progress=progress,
            max_attempts=max_attempts,
        )

    # -- artifacts --------------------------------------------------------------------------------

    def check_artifact(self, manifest: ArtifactManifest) -> list[str]:
        """Ask whether the server would register ``manifest`` (raises its refusal); the sha256 of the files
        it does not hold yet."""
        body = self._json("POST", "/v1/artifacts/check", json={"manifest": manifest.to_dict()})
        missing = body.get("missing_blobs") if isinstance(body, dict) else None
        if not isinstance(missing, list) or not all(isinstance(m, str) for m in missing):
            raise EdgefleetError(
                "unexpected answer from the server for an artifact check",
                code="unexpected_response",
                got=str(body)[:200],
            )
        return missing

    def register_artifact(self, manifest: ArtifactManifest) -> ArtifactInfo:
        return _parse(
            ArtifactInfo, self._json("POST", "/v1/artifacts", json={"manifest": manifest.to_dict()})
        )

    def list_artifacts(
        self,
        *,
        model: str | None = None,
        version: str | None = None,
        hardware_class: str | None = None,
        disabled: bool | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Page[ArtifactInfo]:
        params = _params(
            model=model,
            version=version,
            hardware_class=hardware_class,
            disabled=disabled,
            limit=limit,
            offset=offset,
        )
        return self._page(ArtifactInfo, "/v1/artifacts", params)

    def get_artifact(self, artifact_id: str) -> ArtifactInfo:
        return _parse(ArtifactInfo, self._json("GET", f"/v1/artifacts/{artifact_id_checked(artifact_id)}"))

    def set_artifact_disabled(
        self, artifact_id: str, disabled: bool, *, reason: str | None = None
    ) -> ArtifactInfo:
        body: dict[str, Any] = {"disabled": disabled}
        if reason is not None:
            body["reason"] = reason
        path = f"/v1/artifacts/{artifact_id_checked(artifact_id)}"
        return _parse(ArtifactInfo, self._json("PATCH", path, json=body))

    def delete_artifact(self, artifact_id: str) -> None:
        self._json("DELETE", f"/v1/artifacts/{artifact_id_checked(artifact_id)}")

    def download_artifact_file(
        self,
        artifact_id: str,
        path: str,
        dest: Path,
        *,
        sha256: str,
        length: int,
        progress: ProgressCallback | None = None,
        max_attempts: int = 5,
    ) -> Path:
        if not is_safe_relpath(path):
            raise InvalidDocumentError(
                "unsafe artifact file path", code="invalid_path", expected="relative", got=path
            )
        url = f"/v1/artifacts/{artifact_id_checked(artifact_id)}/files/{quote(path, safe='/')}"
        return download_verified(
            self._http,
            url,
            Path(dest),
            sha256=sha256,
            length=length,
            progress=progress,
            max_attempts=max_attempts,
        )

    # -- operator tokens and audit ----------------------------------------------------------------

    def create_token(self, name: str, role: str) -> TokenInfo:
        return _parse(TokenInfo, self._json("POST", "/v1/tokens", json={"name": name, "role": role}))

    def list_tokens(self, *, limit: int = 50, offset: int = 0) -> Page[TokenInfo]:
        return self._page(TokenInfo, "/v1/tokens", _params(limit=limit, offset=offset))

    def revoke_token(self, token_id: str | int) -> None:
        self._json("DELETE", f"/v1/tokens/{_ident(token_id, 'token id')}")

    def list_audit(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Page[AuditEntry]:
        """Newest first; ``action="device.*"`` matches a family; ``since``/``until`` are ISO 8601."""
        params = _params(
            actor=actor, action=action, target=target, since=since, until=until, limit=limit, offset=offset
        )
        return self._page(AuditEntry, "/v1/audit", params)
