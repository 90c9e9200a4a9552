"""Ed25519 keys for the resident agent, without ``cryptography`` (its Rust extension costs ~9.4 MiB resident,
PyNaCl ~1.4 MiB, measured): the device key that signs every request and the director key that verifies the
desired state.

Only the two PEM forms edgefleet itself writes are read, strictly (RFC 8410): the unencrypted PKCS8 private
key ``DataDir.write_key`` writes (the 48-byte DER: a fixed 16-byte prefix, then the 32-byte seed) and the
SubjectPublicKeyInfo public key ``trust.director.public_key_pem`` writes (a fixed 12-byte prefix, then the
32-byte key). Anything else (encrypted, another algorithm, a longer encoding, truncated, garbage) is refused
with what was expected and what arrived: a device key in a form we did not write is not guessed at.

Parsing and rendering are pure Python (the server imports this module for the key id and the PEM text);
PyNaCl is imported only to sign or verify, so it is needed where those happen: on the device.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Protocol

from edgefleet.protocol.errors import InvalidDocumentError

__all__ = [
    "Ed25519Signer",
    "Ed25519VerifyKey",
    "RawPublicKey",
    "keyid_of_raw",
]

MAX_PEM_BYTES = 4096
_PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
"""SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING (32 bytes) } }."""
_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
"""SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING (0 unused bits, 32 bytes) }."""
_RAW_BYTES = 32
_OTHER_ALGORITHMS = {
    bytes.fromhex("06032b6571"): "Ed448",
    bytes.fromhex("06032b656e"): "X25519",
    bytes.fromhex("06032b656f"): "X448",
    bytes.fromhex("06092a864886f70d010101"): "RSA",
    bytes.fromhex("06072a8648ce3d0201"): "EC",
}
"""The algorithm identifiers we name when a key of another algorithm arrives (the error says which)."""
_OTHER_LABELS = {"RSA PRIVATE KEY": "RSA", "EC PRIVATE KEY": "EC", "DSA PRIVATE KEY": "DSA"}


def keyid_of_raw(raw: bytes) -> str:
    """The key id rule, one for every side: sha256 of the raw 32-byte public key, hex."""
    return hashlib.sha256(raw).hexdigest()


class RawPublicKey(Protocol):
    """A public key that gives its raw bytes: ``cryptography``'s Ed25519 key, ``Ed25519VerifyKey``."""

    def public_bytes_raw(self) -> bytes: ...


@dataclass(frozen=True)
class Ed25519VerifyKey:
    """An Ed25519 public key: its raw 32 bytes; verifies with PyNaCl."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != _RAW_BYTES:
            raise InvalidDocumentError(
                "Ed25519 public key has the wrong length",
                code="invalid_public_key",
                expected=f"{_RAW_BYTES} bytes",
                got=len(self.raw),
            )

    @classmethod
    def from_pem(cls, pem: str | bytes) -> Ed25519VerifyKey:
        """Parse the SubjectPublicKeyInfo PEM; raises ``InvalidDocumentError`` (``invalid_public_key``)."""
        der = _pem_der(pem, "PUBLIC KEY", code="invalid_public_key")
        return cls(_strip_prefix(der, _SPKI_PREFIX, code="invalid_public_key"))

    @classmethod
    def of(cls, key: RawPublicKey) -> Ed25519VerifyKey:
        """This key as it is, or another Ed25519 public key (``cryptography``'s) by its raw bytes."""
        return key if isinstance(key, Ed25519VerifyKey) else cls(key.public_bytes_raw())

    def public_bytes_raw(self) -> bytes:
        return self.raw

    def pem(self) -> str:
        """The SubjectPublicKeyInfo PEM, the same text ``cryptography`` writes for this key."""
        body = base64.b64encode(_SPKI_PREFIX + self.raw).decode()
        lines = [body[i : i + 64] for i in range(0, len(body), 64)]
        return "\n".join(["-----BEGIN PUBLIC KEY-----", *lines, "-----END PUBLIC KEY-----", ""])

    def verifies(self, signature: bytes, message: bytes) -> bool:
        """Whether ``signature`` is this key's over ``message``. Named for its answer: it returns ``False``
        where ``cryptography``'s ``verify`` raises, so a caller cannot mistake one for the other."""
        from nacl.exceptions import BadSignatureError
        from nacl.signing import VerifyKey

        try:
            VerifyKey(self.raw).verify(message, signature)
        except (BadSignatureError, ValueError, TypeError):
            return False
        return True


class Ed25519Signer:
    """An Ed25519 private key that signs (the device key). ``repr`` shows the key id, never the seed."""

    def __init__(self, seed: bytes) -> None:
        from nacl.signing import SigningKey

        if len(seed) != _RAW_BYTES:
            raise InvalidDocumentError(
                "Ed25519 seed has the wrong length",
                code="invalid_private_key",
                expected=f"{_RAW_BYTES} bytes",
                got=len(seed),
            )
        self._key = SigningKey(seed)
        self._public = Ed25519VerifyKey(self._key.verify_key.encode())

    @classmethod
    def from_pem(cls, pem: str | bytes) -> Ed25519Signer:
        """Parse the unencrypted PKCS8 PEM; raises ``InvalidDocumentError``: ``private_key_not_ed25519``
        for a key of another algorithm, ``invalid_private_key`` for anything else we did not write."""
        der = _pem_der(pem, "PRIVATE KEY", code="invalid_private_key")
        return cls(_strip_prefix(der, _PKCS8_PREFIX, code="invalid_private_key"))

    def sign(self, message: bytes) -> bytes:
        """The 64-byte signature over ``message``."""
        return self._key.sign(message).signature

    def public_key(self) -> Ed25519VerifyKey:
        return self._public

    def __repr__(self) -> str:
        return f"Ed25519Signer(keyid={keyid_of_raw(self._public.raw)[:16]})"


def _not_ed25519(code: str, algorithm: str) -> InvalidDocumentError:
    """A key of another algorithm: a private key has its own code (the data dir says so in its message)."""
    if code == "invalid_private_key":
        return InvalidDocumentError(
            "private key is not Ed25519", code="private_key_not_ed25519", expected="Ed25519", got=algorithm
        )
    return InvalidDocumentError("public key is not Ed25519", code=code, expected="Ed25519", got=algorithm)


def _pem_der(pem: str | bytes, label: str, *, code: str) -> bytes:
    """The DER inside a PEM with exactly this label, one block, nothing around it."""
    text = pem.decode("ascii", "replace") if isinstance(pem, bytes) else pem
    if len(text) > MAX_PEM_BYTES:
        raise InvalidDocumentError(
            "PEM is too large", code=code, expected=f"<= {MAX_PEM_BYTES} bytes", got=len(text)
        )
    lines = text.strip().splitlines()
    begin, end = f"-----BEGIN {label}-----", f"-----END {label}-----"
    first = lines[0].strip() if lines else ""
    if first != begin:
        other = first.removeprefix("-----BEGIN ").removesuffix("-----")
        if other in _OTHER_LABELS:
            raise _not_ed25519(code, _OTHER_LABELS[other])
        got = f"an encrypted key ({first})" if "ENCRYPTED" in first else (first[:40] or "nothing")
        raise InvalidDocumentError(f"not a PEM {label.lower()}", code=code, expected=begin, got=got)
    if len(lines) < 3 or lines[-1].strip() != end:
        raise InvalidDocumentError(
            f"PEM {label.lower()} is truncated", code=code, expected=end, got=lines[-1].strip()[:40]
        )
    try:
        return base64.b64decode("".join(line.strip() for line in lines[1:-1]), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidDocumentError(
            f"PEM {label.lower()} body is not base64", code=code, expected="base64", got=str(exc)
        ) from exc


def _strip_prefix(der: bytes, prefix: bytes, *, code: str) -> bytes:
    """The 32 raw bytes after the exact RFC 8410 prefix; a key of another algorithm is named."""
    if der.startswith(prefix) and len(der) == len(prefix) + _RAW_BYTES:
        return der[len(prefix) :]
    for oid, name in _OTHER_ALGORITHMS.items():
        if oid in der[:32]:
            raise _not_ed25519(code, name)
    raise InvalidDocumentError(
        "key is not the RFC 8410 Ed25519 encoding edgefleet writes",
        code=code,
        expected=f"{len(prefix) + _RAW_BYTES} bytes starting {prefix.hex()}",
        got=f"{len(der)} bytes starting {der[: len(prefix)].hex()}",
    )
