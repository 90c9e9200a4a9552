"""The alert webhook contract: the event kinds, and body signing. Each body carries
``X-Edgefleet-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`` over ``b"<t>." + body`` with the webhook's
secret (docs/security.md shows how a receiver verifies it)."""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["EVENT_KINDS", "SIGNATURE_HEADER", "sign_body", "signature_header", "verify_signature"]

EVENT_KINDS: tuple[str, ...] = (
    "rollout.halted",
    "rollout.completed",
    "rollout.stalled",
    "device.offline",
    "security",
    "artifact.disabled",
    "test",
)
"""What a webhook may subscribe to (``events``; empty subscribes to all)."""

SIGNATURE_HEADER = "X-Edgefleet-Signature"


def sign_body(secret: str, timestamp_s: int, body: bytes) -> str:
    return hmac.new(secret.encode(), str(timestamp_s).encode() + b"." + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp_s: int, body: bytes) -> str:
    return f"t={timestamp_s},v1={sign_body(secret, timestamp_s, body)}"


def verify_signature(
    secret: str, header: str, body: bytes, *, now_s: float, tolerance_s: float = 300.0
) -> bool:
    """What a receiver does: the signature matches and the timestamp is within ``tolerance_s`` of now (an
    old body replayed later is refused)."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp_s = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now_s - timestamp_s) > tolerance_s:
        return False
    return hmac.compare_digest(parts.get("v1", ""), sign_body(secret, timestamp_s, body))
