"""Image-repository calls of the control-plane client: status, metadata, publishing signed targets."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from edgefleet.client.transfer import ProgressCallback, download_verified

__all__ = ["TufApi"]


class TufApi:
    """Mixed into ``EdgefleetClient``; relies on its ``_http``, ``_json``, ``_request``, ``upload_blob``."""

    _http: httpx.Client

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:  # pragma: no cover - from the client
        raise NotImplementedError

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:  # pragma: no cover
        raise NotImplementedError

    def upload_blob(
        self,
        source: Path,
        *,
        sha256: str | None = None,
        progress: ProgressCallback | None = None,
        skip_existing: bool = True,
    ) -> Any:  # pragma: no cover
        raise NotImplementedError

    def tuf_status(self) -> dict[str, Any]:
        return dict(self._json("GET", "/v1/tuf"))

    def tuf_metadata(self, name: str) -> bytes:
        """Raw bytes of one metadata file (``root.json``, ``3.targets.json``, ...)."""
        return self._request("GET", f"/tuf/metadata/{name}").content

    def publish_targets(
        self, targets_bytes: bytes, files: Mapping[str, Path], *, progress: ProgressCallback | None = None
    ) -> int:
        """Upload every target as a blob, then the release-signed targets metadata; returns its version."""
        by_path: dict[str, str] = {}
        for path, source in files.items():
            by_path[path] = self.upload_blob(Path(source), progress=progress).sha256
        body = {"targets_b64": base64.b64encode(targets_bytes).decode(), "files": by_path}
        return int(self._json("POST", "/v1/tuf/targets", json=body)["targets_version"])

    def running_artifacts(
        self, hardware_class: str, *, model: str | None = None, limit: int = 3
    ) -> list[Any]:
        """What the class's devices run now, most devices first (the bases of deltas)."""
        params: dict[str, Any] = {"limit": limit}
        if model is not None:
            params["model"] = model
        return list(
            self._json("GET", f"/v1/classes/{quote(hardware_class, safe='')}/running", params=params)["items"]
        )

    def download_tuf_target(self, storage_name: str, dest: Path, *, sha256: str, length: int) -> Path:
        """One stored target file (``dir/<sha256>.name``), verified against ``sha256`` and ``length``."""
        return download_verified(
            self._http, f"/tuf/targets/{quote(storage_name, safe='/')}", dest, sha256=sha256, length=length
        )
