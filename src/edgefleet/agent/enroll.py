"""One-time enrollment: the device makes its own key pair and registers only the public half."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgefleet.agent.channel import ServerUnreachableError
from edgefleet.agent.datadir import DataDir, DeviceIdentity
from edgefleet.protocol.errors import ConflictError, EdgefleetError, error_from_body
from edgefleet.trust.director import public_key_pem

__all__ = ["AGENT_VERSION", "enroll"]

AGENT_VERSION = "0.1.0"


def enroll(
    *,
    server_url: str,
    token: str,
    data_dir: Path | str,
    serial: str | None = None,
    force: bool = False,
    transport: httpx.BaseTransport | None = None,
    timeout_s: float = 30.0,
) -> DeviceIdentity:
    """Enroll this device. Refuses an enrolled data dir unless ``force`` (which makes a new identity)."""
    ddir = DataDir(data_dir)
    if ddir.is_enrolled() and not force:
        raise ConflictError(
            "data dir is already enrolled (use --force to enroll again with a new key)",
            code="already_enrolled",
            got=str(ddir.root),
        )
    key = Ed25519PrivateKey.generate()
    body = {
        "token": token,
        "public_key_pem": public_key_pem(key.public_key()),
        "serial": serial,
        "agent_version": AGENT_VERSION,
    }
    try:
        with httpx.Client(base_url=server_url.rstrip("/"), transport=transport, timeout=timeout_s) as http:
            response = http.post("/v1/enroll", json=body)
    except httpx.HTTPError as exc:
        raise ServerUnreachableError(f"cannot reach {server_url}: {exc!r}", got=type(exc).__name__) from exc
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        data = None
    if response.status_code != 201:
        raise error_from_body(response.status_code, data)
    try:
        identity = DeviceIdentity(
            device_id=str(data["device_id"]),
            server_url=server_url.rstrip("/"),
            hardware_class=str(data["hardware_class"]),
            director_public_key_pem=str(data["director_public_key_pem"]),
            labels={str(k): str(v) for k, v in dict(data.get("labels") or {}).items()},
            enrolled_at=datetime.now(timezone.utc).isoformat(),
        )
        identity.director_key  # noqa: B018  # must parse before we persist it
    except (KeyError, TypeError, ValueError, EdgefleetError) as exc:
        raise EdgefleetError("enrollment answer is malformed", code="malformed_enrollment_response") from exc
    if force and ddir.root.exists():
        # A new identity: the old accepted state belongs to the old device id.
        shutil.rmtree(ddir.root / "state", ignore_errors=True)
    ddir.write_key(key)
    ddir.write_identity(identity, data.get("tuf_root"), data.get("hardware_class_document"))
    return identity
