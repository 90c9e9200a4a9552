"""Signed device requests: each request proves possession of the device's Ed25519 key.

The signature covers the method, the path with its query, the body's sha256, a timestamp, a nonce and the
device id, so it cannot be moved to another request, another body, another device or another time. The
server checks the timestamp against a skew window and remembers nonces for that window (replay protection);
identity comes only from the signature verifying under the public key registered at enrollment.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from edgefleet.protocol.errors import AuthenticationError

if TYPE_CHECKING:  # the server verifies with cryptography; the device signs without it (trust.ed25519)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = [
    "HEADER_DEVICE",
    "HEADER_NONCE",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "MAX_CLOCK_SKEW_S",
    "RequestSigner",
    "SignedRequestClaims",
    "parse_signed_headers",
    "sign_request",
    "string_to_sign",
    "verify_request_signature",
]

HEADER_DEVICE = "x-edgefleet-device"
HEADER_TIMESTAMP = "x-edgefleet-timestamp"
HEADER_NONCE = "x-edgefleet-nonce"
HEADER_SIGNATURE = "x-edgefleet-signature"
MAX_CLOCK_SKEW_S = 300
_DOMAIN = b"edgefleet-request-v1"


class RequestSigner(Protocol):
    """The device key as signing needs it: ``trust.ed25519.Ed25519Signer`` (the agent's) or
    ``cryptography``'s ``Ed25519PrivateKey`` (tests, benches, the simulator)."""

    def sign(self, message: bytes, /) -> bytes: ...


@dataclass(frozen=True)
class SignedRequestClaims:
    device_id: str
    timestamp: int
    nonce: str
    signature: bytes


def string_to_sign(
    *, method: str, path: str, body: bytes, timestamp: int, nonce: str, device_id: str
) -> bytes:
    body_hash = hashlib.sha256(body).hexdigest()
    parts = [_DOMAIN, method.upper().encode(), path.encode(), body_hash.encode(), str(timestamp).encode()]
    parts += [nonce.encode(), device_id.encode()]
    return b"\n".join(parts)


def sign_request(
    key: RequestSigner, *, device_id: str, method: str, path: str, body: bytes, now_s: float
) -> dict[str, str]:
    """Headers to add to a request. ``path`` includes the query string exactly as sent."""
    timestamp = int(now_s)
    nonce = secrets.token_hex(16)
    message = string_to_sign(
        method=method, path=path, body=body, timestamp=timestamp, nonce=nonce, device_id=device_id
    )
    return {
        HEADER_DEVICE: device_id,
        HEADER_TIMESTAMP: str(timestamp),
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: base64.b64encode(key.sign(message)).decode(),
    }


def parse_signed_headers(headers: Mapping[str, str]) -> SignedRequestClaims:
    """Extract and bound the claims; raises ``AuthenticationError`` (``unsigned_request``)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    missing = [
        h for h in (HEADER_DEVICE, HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE) if h not in lowered
    ]
    if missing:
        raise AuthenticationError(
            "device request is not signed", code="unsigned_request", expected="signature headers", got=missing
        )
    device_id, nonce = lowered[HEADER_DEVICE], lowered[HEADER_NONCE]
    if not (0 < len(device_id) <= 64) or not (16 <= len(nonce) <= 64) or not nonce.isalnum():
        raise AuthenticationError("malformed signature headers", code="unsigned_request")
    try:
        timestamp = int(lowered[HEADER_TIMESTAMP])
        signature = base64.b64decode(lowered[HEADER_SIGNATURE], validate=True)
    except ValueError as exc:
        raise AuthenticationError("malformed signature headers", code="unsigned_request") from exc
    if len(signature) != 64:
        raise AuthenticationError(
            "malformed signature", code="unsigned_request", expected="64 bytes", got=len(signature)
        )
    return SignedRequestClaims(device_id=device_id, timestamp=timestamp, nonce=nonce, signature=signature)


def verify_request_signature(
    public_key: Ed25519PublicKey,
    claims: SignedRequestClaims,
    *,
    method: str,
    path: str,
    body: bytes,
    now_s: float,
    max_skew_s: int = MAX_CLOCK_SKEW_S,
) -> None:
    """Check the signature and the timestamp window. Nonce replay is the caller's (stateful) check."""
    from cryptography.exceptions import InvalidSignature

    skew = claims.timestamp - now_s
    if abs(skew) > max_skew_s:
        raise AuthenticationError(
            "request timestamp outside the allowed clock skew",
            code="clock_skew",
            expected=f"within {max_skew_s} s of server time {int(now_s)}",
            got=claims.timestamp,
        )
    message = string_to_sign(
        method=method,
        path=path,
        body=body,
        timestamp=claims.timestamp,
        nonce=claims.nonce,
        device_id=claims.device_id,
    )
    try:
        public_key.verify(claims.signature, message)
    except InvalidSignature as exc:
        raise AuthenticationError("request signature does not verify", code="bad_signature") from exc
