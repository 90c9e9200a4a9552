"""The director's online signing key: loaded at start, generated only in dev mode."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgefleet.durable import atomic_write_bytes
from edgefleet.server.errors import ConfigurationError

__all__ = ["DIRECTOR_KEY_FILE", "load_director_key"]

DIRECTOR_KEY_FILE = "director.key"


def load_director_key(path: Path, *, create: bool) -> Ed25519PrivateKey:
    """Load an unencrypted PKCS8 PEM Ed25519 key; with ``create`` (dev mode) make one if absent."""
    if not path.exists():
        if not create:
            raise ConfigurationError(
                "the director key is missing (create it with `edgefleet keys init`, or use --dev)",
                expected="an Ed25519 PKCS8 PEM file",
                got=str(path),
            )
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        atomic_write_bytes(path, pem, mode=0o600)
        return key
    try:
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise ConfigurationError("cannot load the director key", got=str(path)) from exc
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ConfigurationError(
            "the director key is not Ed25519", expected="Ed25519", got=type(loaded).__name__
        )
    if path.stat().st_mode & 0o077:
        raise ConfigurationError(
            "the director key is readable by others",
            expected="mode 0600",
            got=oct(path.stat().st_mode & 0o777),
        )
    return loaded
