"""One-time enrollment: the device makes its own key pair and registers only the public half."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import httpx

from edgefleet import __version__
from edgefleet.agent.channel import ServerUnreachableError
from edgefleet.agent.datadir import DataDir, DeviceIdentity
from edgefleet.protocol.errors import AuthenticationError, ConflictError, EdgefleetError, error_from_body
from edgefleet.trust.director import public_key_pem

__all__ = ["enroll"]


def enroll(
    *,
    server_url: str,
    token: str,
    data_dir: Path | str,
    serial: str | None = None,
    force: bool = False,
    transport: httpx.BaseTransport | None = None,
    timeout_s: float = 30.0,
    hardware_class: str | None = None,
    tuf_root: bytes | None = None,
    content_url: str | None = None,
) -> DeviceIdentity:
    """Enroll this device. Refuses an enrolled data dir unless ``force`` (which makes a new identity).

    ``hardware_class``: what this device is (from its image); the server refuses a token of another class.
    ``tuf_root``: a TUF root provisioned out of band (in the device image, by the release team). Without it
    the device trusts the root and director key the server hands out at enrollment (trust on first use);
    with it, the root is pinned from the file and the director key must be one that root names, so a control
    plane compromised at enrollment time cannot give the device its own trust anchors.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from edgefleet.trust.provisioned import pin_provisioned_root  # python-tuf: enrollment only

    content_url = _content_url(content_url)  # a bad value fails here, before the token is spent
    pinned = None
    if tuf_root is not None:
        pinned = pin_provisioned_root(tuf_root)  # a bad file fails here, before the token is spent
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
        "agent_version": __version__,
    }
    if hardware_class is not None:
        body["hardware_class"] = hardware_class
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
    answer = data if isinstance(data, dict) else {}
    if hardware_class is not None and answer.get("hardware_class") != hardware_class:
        raise AuthenticationError(  # a server too old to check the class itself: refuse to become another
            "the server enrolled this device in another hardware class",
            code="enrollment_class_mismatch",
            expected=hardware_class,
            got=str(answer.get("hardware_class")),
        )
    director_pem, root_document = answer.get("director_public_key_pem"), answer.get("tuf_root")
    if pinned is not None:  # the provisioned root decides; a contradicting server is refused here
        director_pem = pinned.director_key_for(director_pem, root_document)
        root_document = pinned.document
    try:
        identity = DeviceIdentity(
            device_id=str(data["device_id"]),
            server_url=server_url.rstrip("/"),
            hardware_class=str(data["hardware_class"]),
            director_public_key_pem=str(director_pem),
            labels={str(k): str(v) for k, v in dict(data.get("labels") or {}).items()},
            enrolled_at=datetime.now(timezone.utc).isoformat(),
            content_url=_content_url(content_url or answer.get("content_base_url")),
        )
        identity.director_key  # noqa: B018  # must parse before we persist it
    except (KeyError, TypeError, ValueError, EdgefleetError) as exc:
        raise EdgefleetError("enrollment answer is malformed", code="malformed_enrollment_response") from exc
    if force and ddir.root.exists():
        # A new identity: the old accepted state belongs to the old device id.
        shutil.rmtree(ddir.root / "state", ignore_errors=True)
    ddir.write_key(key)
    ddir.write_identity(identity, root_document, data.get("hardware_class_document"))
    return identity


def _content_url(value: object) -> str | None:
    """An http(s) base URL, without its trailing slash, or ``None``. The host is not a trust input (every
    byte it serves is verified against the TUF root), but a value that is no URL is refused at once."""
    if value is None or value == "":
        return None
    text = str(value).rstrip("/")
    if not (text.startswith("https://") or text.startswith("http://")) or len(text) > 2048:
        raise EdgefleetError(
            "the content base URL is not an http(s) URL",
            code="invalid_content_url",
            expected="http(s)://host[/path]",
            got=text[:200],
        )
    return text
