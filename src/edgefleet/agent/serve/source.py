"""Where the model to serve comes from: the installer's active slot, behind a two-method interface.

``ActiveSource.active()`` answers "which artifact is active now (its files dir and manifest)";
``ActiveSource.subscribe(callback)`` asks to be told when that changes. ``SlotActiveSource`` is the real one
(it reads the slot's ``active`` pointer, which only changes by atomic replace, and notifies on ``poll()``);
``StaticSource`` serves one artifact directory (a pinned fallback, a bench, a test).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from edgefleet.agent.install.slots import SlotStore
from edgefleet.protocol.errors import EdgefleetError
from edgefleet.protocol.wire.base import read_document
from edgefleet.protocol.wire.manifest import ArtifactManifest

__all__ = ["ActiveArtifact", "ActiveSource", "SlotActiveSource", "StaticSource", "read_artifact_dir"]

log = logging.getLogger("edgefleet.agent.serve")

ActiveCallback = Callable[["ActiveArtifact | None"], None]
MAX_MANIFEST_FILE_BYTES = 1_000_000


@dataclass(frozen=True)
class ActiveArtifact:
    """One installed artifact: its id, the directory holding its files, and its manifest."""

    artifact_id: str
    files_dir: Path
    manifest: ArtifactManifest

    @property
    def model_path(self) -> Path:
        return self.files_dir / self.manifest.entrypoint

    @property
    def model_version(self) -> str:
        """What responses and telemetry name: ``<model>/<version>``."""
        return f"{self.manifest.model}/{self.manifest.version}"


class ActiveSource(Protocol):
    def active(self) -> ActiveArtifact | None:
        """The artifact to serve now, or ``None`` when nothing is installed."""

    def subscribe(self, callback: ActiveCallback) -> None:
        """Call ``callback(new_active)`` (from any thread) each time the active artifact changes."""


def read_artifact_dir(files_dir: Path, *, artifact_id: str | None = None) -> ActiveArtifact:
    """An artifact laid out as ``<dir>/manifest.json`` + its files (what ``edgefleet build`` writes).

    Raises ``EdgefleetError`` (code ``artifact_unreadable``) when the manifest is missing or invalid.
    """
    files_dir = Path(files_dir)
    path = files_dir / "manifest.json"
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_MANIFEST_FILE_BYTES + 1)
    except OSError as exc:
        raise EdgefleetError(
            f"artifact manifest is unreadable: {exc}", code="artifact_unreadable", got=str(path)
        ) from exc
    try:
        data = json.loads(raw) if len(raw) <= MAX_MANIFEST_FILE_BYTES else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        data = None
    manifest = read_document(data, ArtifactManifest, kind="artifact manifest")
    ident = artifact_id or f"{manifest.model}/{manifest.version}/{manifest.hardware_class}"
    return ActiveArtifact(artifact_id=ident, files_dir=files_dir, manifest=manifest)


class StaticSource:
    """Always the same artifact (or none). ``set()`` swaps it and notifies, like an installer switch."""

    def __init__(self, artifact: ActiveArtifact | None) -> None:
        self._artifact = artifact
        self._callbacks: list[ActiveCallback] = []
        self._lock = threading.Lock()

    def active(self) -> ActiveArtifact | None:
        return self._artifact

    def subscribe(self, callback: ActiveCallback) -> None:
        with self._lock:
            self._callbacks.append(callback)

    def set(self, artifact: ActiveArtifact | None) -> None:
        with self._lock:
            self._artifact = artifact
            callbacks = list(self._callbacks)
        for callback in callbacks:
            callback(artifact)


class SlotActiveSource:
    """The installer's slot on disk. ``poll()`` (call it after an install step, or from a timer) re-reads
    the ``active`` pointer and notifies subscribers when it names another version."""

    def __init__(self, data_root: Path, slot: str = "default") -> None:
        self._store = SlotStore(Path(data_root), slot)
        self._callbacks: list[ActiveCallback] = []
        self._lock = threading.Lock()
        self._seen: str | None = None
        self._artifact: ActiveArtifact | None = None
        self._read()

    def _read(self) -> ActiveArtifact | None:
        pointer = self._store.read_active()
        if pointer is None:
            self._seen, self._artifact = None, None
            return None
        if pointer.version == self._seen:
            return self._artifact
        try:
            # Re-hashed here, not only at the installer's switch: a file changed on disk after the switch
            # (a bad sector, a stray write) is never loaded; serving steps down the ladder instead.
            manifest = self._store.verify(pointer.version)
        except EdgefleetError as exc:
            log.error("event=active_version_unusable slot=%s code=%s", self._store.slot, exc.code)
            self._seen, self._artifact = pointer.version, None
            return None
        self._seen = pointer.version
        self._artifact = ActiveArtifact(pointer.artifact_id, self._store.files_dir(pointer.version), manifest)
        return self._artifact

    def active(self) -> ActiveArtifact | None:
        with self._lock:
            return self._artifact

    def withdrawn(self) -> ActiveArtifact | None:
        """The artifact the installer withdrew from this slot (the kill switch with no previous version), or
        ``None``. Its manifest still says what a rule answer looks like; it is never loaded."""
        marker = self._store.read_withdrawn()
        if marker is None or self._store.read_active() is not None:
            return None
        try:
            manifest = self._store.read_manifest(marker.version)
        except EdgefleetError:
            return None
        return ActiveArtifact(marker.artifact_id, self._store.files_dir(marker.version), manifest)

    def withdrawn_reason(self) -> str | None:
        marker = self._store.read_withdrawn()
        return marker.reason if marker is not None and self._store.read_active() is None else None

    def subscribe(self, callback: ActiveCallback) -> None:
        with self._lock:
            self._callbacks.append(callback)

    def poll(self) -> bool:
        """Re-read the pointer; True (and subscribers told) when the active version changed."""
        with self._lock:
            before = self._seen
            artifact = self._read()
            if self._seen == before:
                return False
            callbacks = list(self._callbacks)
        for callback in callbacks:
            callback(artifact)
        return True
