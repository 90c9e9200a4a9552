"""Keys and the root of trust: generation, loading, the signed root, and rotations.

Layout of a key directory (``edgefleet keys init DIR``)::

    root-1.key .. root-M.key   offline root keys (keep apart; a threshold of them signs each new root)
    release.key                offline model-release key: the TUF ``targets`` role, used only by the publisher
    snapshot.key, timestamp.key  online keys held by the server (image repository)
    director.key               online key held by the server: signs each device's desired state
    *.pub                      the public halves (PEM SubjectPublicKeyInfo)
    N.root.json, root.json     every signed root version, and a copy of the newest

Private keys are Ed25519, PKCS8 PEM, mode 0600; loading refuses a key readable by group or others.

The root also names the director's public key (``x-edgefleet-director-keys``, signed with the rest of the
root), so rotating the director key is a root version bump that devices follow like any other.

A root rotation writes ``N+1.root.json`` signed by a threshold of the *old* root keys and of the *new* ones
(TUF 5.3.4), so a device holding version N follows the chain to N+1 on its next refresh.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)
from securesystemslib.signer import CryptoSigner, SSlibKey
from tuf.api.metadata import Metadata, Role, Root

from edgefleet.durable import atomic_write_bytes
from edgefleet.trust.director import DIRECTOR_KEYS_FIELD, public_key_pem
from edgefleet.trust.errors import KeyFileError

__all__ = [
    "ONLINE_KEY_NAMES",
    "ROLE_OF_KEY",
    "ROOT_EXPIRY",
    "KeySet",
    "generate_key",
    "init_keys",
    "load_public_key",
    "load_root_signers",
    "load_signer",
    "root_key_names",
    "rotate_role_key",
    "rotate_root_keys",
]

ROOT_EXPIRY = timedelta(days=365)
ONLINE_KEY_NAMES = ("snapshot", "timestamp", "director")
ROLE_OF_KEY = {"release": "targets", "snapshot": "snapshot", "timestamp": "timestamp"}
"""Key file name -> the TUF role it signs. The director key is not a TUF role: devices pin it at enrollment
and learn a rotated one from the root's ``x-edgefleet-director-keys`` field."""
ROTATABLE_KEYS = (*ROLE_OF_KEY, "director")

MAX_KEY_FILE_BYTES = 16_384


@dataclass(frozen=True)
class KeySet:
    """What ``init_keys`` produced."""

    directory: Path
    root_bytes: bytes
    root_threshold: int
    root_key_count: int


def root_key_names(count: int) -> list[str]:
    return [f"root-{i}" for i in range(1, count + 1)]


def _store_key(directory: Path, name: str, private: Ed25519PrivateKey) -> None:
    pem = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    pub = private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    atomic_write_bytes(directory / f"{name}.key", pem, mode=0o600)
    atomic_write_bytes(directory / f"{name}.pub", pub, mode=0o644)


def generate_key(directory: Path, name: str, *, overwrite: bool = False) -> CryptoSigner:
    """Create ``name.key`` (0600, PKCS8 PEM) and ``name.pub`` (PEM) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    key_path = directory / f"{name}.key"
    if key_path.exists() and not overwrite:
        raise KeyFileError(f"refusing to overwrite {key_path}", expected="a new key name", got=str(key_path))
    private = Ed25519PrivateKey.generate()
    _store_key(directory, name, private)
    return CryptoSigner(private, SSlibKey.from_crypto(private.public_key()))


def _read_bounded(path: Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise KeyFileError(
            f"cannot read key file {path}: {exc}", expected="a readable key file", got=str(exc)
        ) from exc
    if len(data) > MAX_KEY_FILE_BYTES:
        raise KeyFileError("key file too large", expected=f"<= {MAX_KEY_FILE_BYTES} bytes", got=str(path))
    return data


def load_signer(path: Path) -> CryptoSigner:
    """Load an Ed25519 private key file written by ``generate_key``; refuse group/other-readable files."""
    path = Path(path)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError as exc:
        raise KeyFileError(f"missing key file {path}", expected="an existing key file", got=str(exc)) from exc
    if mode & 0o077:
        raise KeyFileError(f"private key {path} is accessible by others", expected="mode 0600", got=oct(mode))
    try:
        private = load_pem_private_key(_read_bounded(path), password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path} is not a PEM private key", expected="PKCS8 PEM", got=str(exc)) from exc
    if not isinstance(private, Ed25519PrivateKey):
        raise KeyFileError(f"{path} is not Ed25519", expected="Ed25519", got=type(private).__name__)
    return CryptoSigner(private, SSlibKey.from_crypto(private.public_key()))


def load_public_key(path: Path) -> SSlibKey:
    try:
        public = load_pem_public_key(_read_bounded(Path(path)))
    except (ValueError, TypeError) as exc:
        raise KeyFileError(
            f"{path} is not a PEM public key", expected="PEM public key", got=str(exc)
        ) from exc
    return SSlibKey.from_crypto(public)


def load_root_signers(directory: Path) -> list[CryptoSigner]:
    """Every ``root-*.key`` present: with a 2-of-3 root, bring any two of the three files together."""
    return [load_signer(p) for p in sorted(Path(directory).glob("root-*.key"))]


def _write_root(directory: Path, md: Metadata[Root]) -> bytes:
    data = md.to_bytes()
    atomic_write_bytes(directory / f"{md.signed.version}.root.json", data)
    atomic_write_bytes(directory / "root.json", data)
    return data


def init_keys(directory: Path, *, now: datetime, root_threshold: int = 1, root_keys: int = 1) -> KeySet:
    """Create all keys and the signed ``1.root.json`` (consistent snapshots on)."""
    if not 1 <= root_threshold <= root_keys <= 16:
        raise KeyFileError(
            "invalid root threshold",
            expected="1 <= threshold <= keys <= 16",
            got=f"{root_threshold}/{root_keys}",
        )
    directory = Path(directory)
    if any(directory.glob("*.key")):
        raise KeyFileError(
            f"{directory} already holds keys", expected="an empty directory", got=str(directory)
        )
    root_signers = [generate_key(directory, n) for n in root_key_names(root_keys)]
    role_signers = {name: generate_key(directory, name) for name in ("release", "snapshot", "timestamp")}
    director = Ed25519PrivateKey.generate()
    _store_key(directory, "director", director)
    root = Root(expires=now + ROOT_EXPIRY, consistent_snapshot=True)
    _name_director_key(root, director.public_key())
    root.roles["root"] = Role([], root_threshold)
    for signer in root_signers:
        root.add_key(signer.public_key, "root")
    for name, signer in role_signers.items():
        root.add_key(signer.public_key, ROLE_OF_KEY[name])
    md = Metadata(root)
    for signer in root_signers:
        md.sign(signer, append=True)
    data = _write_root(directory, md)
    return KeySet(directory, data, root_threshold, root_keys)


def _current_root(directory: Path) -> Metadata[Root]:
    return Metadata[Root].from_bytes((Path(directory) / "root.json").read_bytes())


def _next_root(directory: Path, now: datetime) -> Metadata[Root]:
    md = _current_root(directory)
    md.signed.version += 1
    md.signed.expires = now + ROOT_EXPIRY
    md.signatures.clear()
    return md


def _sign_with(md: Metadata[Root], signers: list[CryptoSigner], role_root: Root) -> None:
    """Sign with every signer listed in ``role_root``'s root role; raise unless the threshold is met."""
    role = role_root.roles["root"]
    used = 0
    for signer in signers:
        if signer.public_key.keyid in role.keyids and signer.public_key.keyid not in md.signatures:
            md.sign(signer, append=True)
            used += 1
    if used < role.threshold:
        raise KeyFileError(
            "not enough root keys to sign the new root",
            expected=f"{role.threshold} of {len(role.keyids)} root keys",
            got=used,
        )


def _name_director_key(root: Root, public_key: Ed25519PublicKey) -> None:
    root.unrecognized_fields[DIRECTOR_KEYS_FIELD] = [public_key_pem(public_key)]


def rotate_role_key(directory: Path, name: str, *, now: datetime) -> bytes:
    """Replace the release, snapshot, timestamp or director key: new key pair, new root N+1 (naming the new
    key). Returns the root."""
    if name not in ROTATABLE_KEYS:
        raise KeyFileError("cannot rotate this key through root", expected=list(ROTATABLE_KEYS), got=name)
    directory = Path(directory)
    signers = load_root_signers(directory)
    md = _next_root(directory, now)
    private = Ed25519PrivateKey.generate()
    if name == "director":
        _name_director_key(md.signed, private.public_key())
    else:
        role = ROLE_OF_KEY[name]
        for keyid in list(md.signed.roles[role].keyids):
            md.signed.revoke_key(keyid, role)
        md.signed.add_key(SSlibKey.from_crypto(private.public_key()), role)
    _sign_with(md, signers, md.signed)
    old = directory / f"{name}.key"
    if old.exists():  # kept until the servers have switched; delete it afterwards
        os.replace(old, directory / f"{name}.v{md.signed.version - 1}.key.old")
    _store_key(directory, name, private)
    return _write_root(directory, md)


def rotate_root_keys(directory: Path, *, now: datetime, threshold: int, count: int) -> bytes:
    """New root keys; ``N+1.root.json`` is signed by a threshold of the old keys and all the new ones."""
    if not 1 <= threshold <= count <= 16:
        raise KeyFileError(
            "invalid root threshold", expected="1 <= threshold <= keys <= 16", got=f"{threshold}/{count}"
        )
    directory = Path(directory)
    old_root = _current_root(directory).signed
    old_signers = load_root_signers(directory)
    md = _next_root(directory, now)
    for keyid in list(md.signed.roles["root"].keyids):
        md.signed.revoke_key(keyid, "root")
    md.signed.roles["root"].threshold = threshold
    new_private = [Ed25519PrivateKey.generate() for _ in range(count)]
    new_signers = [CryptoSigner(k, SSlibKey.from_crypto(k.public_key())) for k in new_private]
    for signer in new_signers:
        md.signed.add_key(signer.public_key, "root")
    _sign_with(md, old_signers, old_root)
    _sign_with(md, new_signers, md.signed)
    # Signed: only now retire the old key files and store the new ones.
    retired = directory / f"retired-root-v{old_root.version}"
    retired.mkdir(exist_ok=True)
    for path in [*directory.glob("root-*.key"), *directory.glob("root-*.pub")]:
        os.replace(path, retired / path.name)
    for name, private in zip(root_key_names(count), new_private, strict=True):
        _store_key(directory, name, private)
    return _write_root(directory, md)
