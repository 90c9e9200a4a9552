"""The agent's data directory: its identity, pinned trust anchors and last accepted state. The directory and
its ``identity/`` and ``state/`` are created 0700; the key, ``device.json`` and the state files are 0600.

Layout (all writes atomic and durable):

    identity/device.key        Ed25519 private key, PKCS8 PEM, mode 0600, never leaves the device
    identity/device.json       device id, server URL, content URL, hardware class, labels, director key (0600)
    identity/tuf-root.json     bootstrap TUF root received at enrollment (when the server has one)
    identity/class.json        the hardware class document (threads, budgets, telemetry bandwidth)
    state/desired.json         last accepted signed desired state (the envelope, verbatim)
    state/time-floor           persisted time floor (ISO 8601); only ever moves forward
    agent.lock                 held (flock) by the one running agent
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgefleet.durable import atomic_write_bytes, private_dir
from edgefleet.protocol.canonical import canonical_json
from edgefleet.protocol.errors import ConflictError, EdgefleetError, InvalidDocumentError
from edgefleet.trust.ed25519 import Ed25519Signer, Ed25519VerifyKey

if TYPE_CHECKING:  # cryptography writes the key at enrollment; the running agent reads it without it
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from edgefleet.protocol.wire.hardware_class import HardwareClass

__all__ = ["AgentLock", "CorruptStateError", "DataDir", "DeviceIdentity", "NotEnrolledError"]

MAX_STATE_FILE_BYTES = 4_000_000


class CorruptStateError(EdgefleetError):
    """A file in the data dir is unreadable. The agent refuses to guess; re-enroll or repair."""

    code = "corrupt_state_file"


class NotEnrolledError(EdgefleetError):
    code = "not_enrolled"


@dataclass(frozen=True)
class DeviceIdentity:
    device_id: str
    server_url: str
    hardware_class: str
    director_public_key_pem: str
    labels: dict[str, str] = field(default_factory=dict)
    enrolled_at: str = ""
    content_url: str | None = None
    """Where TUF metadata and targets are fetched (``<content_url>/metadata/``, ``<content_url>/targets/``):
    a static host or CDN given at enrollment; ``None``: the control plane's own ``/tuf``."""

    @property
    def content_base_url(self) -> str:
        """The image repository's base URL: the content host, else the control plane's ``/tuf``."""
        return (self.content_url or f"{self.server_url}/tuf").rstrip("/")

    @property
    def director_key(self) -> Ed25519VerifyKey:
        return Ed25519VerifyKey.from_pem(self.director_public_key_pem)

    def to_dict(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "server_url": self.server_url,
            "hardware_class": self.hardware_class,
            "director_public_key_pem": self.director_public_key_pem,
            "labels": dict(self.labels),
            "enrolled_at": self.enrolled_at,
            **({"content_url": self.content_url} if self.content_url else {}),
        }


class AgentLock:
    """An exclusive, non-blocking flock on ``agent.lock``; released when the process dies."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        private_dir(self._path.parent)
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise ConflictError(
                "another agent is running on this data dir", code="agent_already_running", got=str(self._path)
            ) from exc
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> AgentLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class DataDir:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    # paths
    @property
    def key_path(self) -> Path:
        return self.root / "identity" / "device.key"

    @property
    def identity_path(self) -> Path:
        return self.root / "identity" / "device.json"

    @property
    def tuf_root_path(self) -> Path:
        return self.root / "identity" / "tuf-root.json"

    @property
    def class_path(self) -> Path:
        return self.root / "identity" / "class.json"

    @property
    def desired_path(self) -> Path:
        return self.root / "state" / "desired.json"

    @property
    def time_floor_path(self) -> Path:
        return self.root / "state" / "time-floor"

    def lock(self) -> AgentLock:
        return AgentLock(self.root / "agent.lock")

    def is_enrolled(self) -> bool:
        return self.identity_path.exists() and self.key_path.exists()

    # identity
    def _private_dirs(self) -> None:
        """The data dir and its ``identity/`` and ``state/`` are owner-only (0700) when created here."""
        for path in (self.root, self.root / "identity", self.root / "state"):
            private_dir(path)

    def write_key(self, key: Ed25519PrivateKey) -> None:
        from cryptography.hazmat.primitives import serialization

        self._private_dirs()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        atomic_write_bytes(self.key_path, pem, mode=0o600)

    def read_key(self) -> Ed25519Signer:
        """The device key as the resident agent signs with it (PyNaCl, no ``cryptography``): read strictly
        in the form ``write_key`` writes."""
        raw = self._read_bytes(self.key_path)
        try:
            return Ed25519Signer.from_pem(raw)
        except InvalidDocumentError as exc:
            message = "device key is not Ed25519" if exc.code == "private_key_not_ed25519" else None
            raise CorruptStateError(
                message or "device key is unreadable", got=str(self.key_path), details={"key": exc.to_body()}
            ) from exc

    def write_identity(
        self,
        identity: DeviceIdentity,
        tuf_root: dict[str, Any] | None,
        hardware_class: dict[str, Any] | None = None,
    ) -> None:
        self._private_dirs()
        if tuf_root is not None:
            atomic_write_bytes(self.tuf_root_path, canonical_json(tuf_root), mode=0o644)
        if hardware_class is not None:
            atomic_write_bytes(self.class_path, canonical_json(hardware_class), mode=0o644)
        atomic_write_bytes(self.identity_path, canonical_json(identity.to_dict()), mode=0o600)

    def read_identity(self) -> DeviceIdentity:
        if not self.is_enrolled():
            raise NotEnrolledError(
                "this data dir is not enrolled; run `edgefleet agent enroll`", got=str(self.root)
            )
        data = self._read_json(self.identity_path)
        try:
            identity = DeviceIdentity(
                device_id=str(data["device_id"]),
                server_url=str(data["server_url"]),
                hardware_class=str(data["hardware_class"]),
                director_public_key_pem=str(data["director_public_key_pem"]),
                labels={str(k): str(v) for k, v in dict(data.get("labels", {})).items()},
                enrolled_at=str(data.get("enrolled_at", "")),
                content_url=str(data["content_url"]) if data.get("content_url") else None,
            )
            identity.director_key  # noqa: B018  # must parse
        except (KeyError, TypeError, ValueError, EdgefleetError) as exc:
            raise CorruptStateError("device identity file is invalid", got=str(self.identity_path)) from exc
        return identity

    def read_hardware_class(self) -> HardwareClass | None:
        """The class document pinned at enrollment, or ``None`` (enrolled by an older server)."""
        if not self.class_path.exists():
            return None
        from edgefleet.protocol.wire.base import read_document  # msgspec: not for the network child
        from edgefleet.protocol.wire.hardware_class import HardwareClass

        try:
            return read_document(self._read_json(self.class_path), HardwareClass, kind="hardware class")
        except InvalidDocumentError as exc:
            raise CorruptStateError("hardware class file is invalid", got=str(self.class_path)) from exc

    def read_tuf_root(self) -> dict[str, Any] | None:
        return self._read_json(self.tuf_root_path) if self.tuf_root_path.exists() else None

    # state
    def read_desired_envelope(self) -> dict[str, Any] | None:
        return self._read_json(self.desired_path) if self.desired_path.exists() else None

    def write_desired_envelope(self, envelope: dict[str, Any]) -> None:
        self._private_dirs()
        atomic_write_bytes(self.desired_path, canonical_json(envelope), mode=0o600)

    def read_time_floor(self) -> datetime | None:
        if not self.time_floor_path.exists():
            return None
        text = self._read_bytes(self.time_floor_path).decode("utf-8", "replace").strip()
        try:
            floor = datetime.fromisoformat(text)
        except ValueError as exc:
            raise CorruptStateError("time floor file is invalid", got=text[:64]) from exc
        if floor.tzinfo is None:
            raise CorruptStateError("time floor has no timezone", got=text[:64])
        return floor

    def raise_time_floor(self, at: datetime) -> datetime:
        """Move the floor forward to ``at`` (never backward). Returns the floor now in force."""
        current = self.read_time_floor()
        if current is not None and current >= at:
            return current
        self._private_dirs()
        atomic_write_bytes(self.time_floor_path, at.isoformat().encode(), mode=0o600)
        return at

    # reading, bounded and with clear errors
    def _read_bytes(self, path: Path) -> bytes:
        try:
            with path.open("rb") as fh:
                data = fh.read(MAX_STATE_FILE_BYTES + 1)
        except OSError as exc:
            raise CorruptStateError(f"cannot read {path.name}: {exc.strerror}", got=str(path)) from exc
        if len(data) > MAX_STATE_FILE_BYTES:
            raise CorruptStateError(
                f"{path.name} is too large", expected=f"<= {MAX_STATE_FILE_BYTES} bytes", got=str(path)
            )
        return data

    def _read_json(self, path: Path) -> Any:
        try:
            return json.loads(self._read_bytes(path))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CorruptStateError(f"{path.name} is not valid JSON", got=str(path)) from exc
