"""The dashboard's session cookie: the operator token, sealed (AES-256-GCM) with a key only servers hold.

Why the token itself: every request re-authenticates it exactly like the API does (``tokens.authenticate``),
so a revoked token logs its sessions out at once and a viewer's session can never act, on every replica,
without a session table. Why sealed: the browser only ever holds ciphertext; a stolen cookie is useless
after ``max_age_s`` and reveals nothing about the token.

The key is derived (HKDF-SHA256, its own ``info`` label) from the director key, the online secret every
replica already shares; rotating the director key logs every dashboard session out.

The CSRF token lives inside the sealed payload and is echoed in every form (synchronizer token); the
cookie is also ``SameSite=Strict`` and ``HttpOnly``, and ``Secure`` when served over https.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

__all__ = [
    "COOKIE_NAME",
    "DEFAULT_MAX_AGE",
    "MAX_COOKIE_CHARS",
    "SessionCodec",
    "SessionData",
    "cookie_attributes",
]

COOKIE_NAME = "ef_session"
DEFAULT_MAX_AGE = timedelta(hours=8)
MAX_COOKIE_CHARS = 1024
_INFO = b"edgefleet dashboard session v1"
_NONCE_BYTES = 12
_AAD = b"ef_session"
_FIELD_AAD = b"ef_form_field:"


@dataclass(frozen=True)
class SessionData:
    token: str
    csrf: str
    expires_at: datetime


class SessionCodec:
    """Seal and open session cookies. Pure apart from the random nonce: time is always passed in."""

    def __init__(self, key: bytes, *, max_age: timedelta = DEFAULT_MAX_AGE) -> None:
        if len(key) != 32:
            raise ValueError("the session key is 32 bytes")
        self._aead = AESGCM(key)
        self.max_age = max_age

    @classmethod
    def from_director_key(
        cls, director_key: Ed25519PrivateKey, *, max_age: timedelta = DEFAULT_MAX_AGE
    ) -> SessionCodec:
        raw = director_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(raw)
        return cls(key, max_age=max_age)

    def seal(self, token: str, *, now: datetime) -> tuple[str, SessionData]:
        """A new session for ``token``: the cookie value and what it holds (with a fresh CSRF token)."""
        data = SessionData(token=token, csrf=secrets.token_urlsafe(24), expires_at=now + self.max_age)
        payload = json.dumps(
            {"t": data.token, "c": data.csrf, "e": int(data.expires_at.timestamp())}, separators=(",", ":")
        ).encode()
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = base64.urlsafe_b64encode(nonce + self._aead.encrypt(nonce, payload, _AAD)).decode()
        if len(sealed) > MAX_COOKIE_CHARS:
            raise ValueError("token too long for a session cookie")
        return sealed, data

    def seal_field(self, text: str, *, bound_to: str) -> str:
        """``text`` sealed for a confirmation page to carry without showing it (a secret the operator
        typed): only this server opens it, and only for the same ``bound_to`` (the session's CSRF token)."""
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, text.encode(), _FIELD_AAD + bound_to.encode())
        return base64.urlsafe_b64encode(nonce + sealed).decode()

    def open_field(self, value: str, *, bound_to: str) -> str | None:
        """What :meth:`seal_field` sealed, or ``None`` if it was forged, tampered or sealed for another."""
        if len(value) > MAX_COOKIE_CHARS:
            return None
        try:
            raw = base64.urlsafe_b64decode(value.encode("ascii"))
            opened = self._aead.decrypt(
                raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _FIELD_AAD + bound_to.encode()
            )
            return opened.decode()
        except (InvalidTag, ValueError, UnicodeError, binascii.Error):
            return None

    def open(self, value: str | None, *, now: datetime) -> SessionData | None:
        """The session inside ``value``, or ``None`` if absent, oversized, forged, tampered or expired."""
        if not value or len(value) > MAX_COOKIE_CHARS:
            return None
        try:
            raw = base64.urlsafe_b64decode(value.encode("ascii"))
            payload = json.loads(self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _AAD))
            token, csrf, expires_s = payload["t"], payload["c"], payload["e"]
        except (InvalidTag, ValueError, KeyError, TypeError, UnicodeError, binascii.Error):
            return None
        if not (isinstance(token, str) and isinstance(csrf, str) and isinstance(expires_s, int)):
            return None
        expires_at = datetime.fromtimestamp(expires_s, tz=now.tzinfo)
        if now >= expires_at:
            return None
        return SessionData(token=token, csrf=csrf, expires_at=expires_at)


def cookie_attributes(*, https: bool, max_age_s: int) -> dict[str, object]:
    """Keyword arguments for ``Response.set_cookie``: never readable by scripts, never sent cross-site."""
    return {
        "max_age": max_age_s,
        "path": "/dashboard",
        "httponly": True,
        "samesite": "strict",
        "secure": https,
    }
