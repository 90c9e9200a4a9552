"""The resident agent's Ed25519 (PyNaCl, no cryptography) against the cryptography keys the server and
enrollment use: signatures cross both ways, the PEMs edgefleet writes load, anything else is refused."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgefleet.agent.datadir import CorruptStateError, DataDir
from edgefleet.protocol.desired_state import DesiredState
from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.protocol.request_signing import parse_signed_headers, sign_request, verify_request_signature
from edgefleet.trust.director import (
    DesiredStateRejectedError,
    ed25519_keyid,
    public_key_pem,
    sign_desired_state,
    verify_desired_state,
)
from edgefleet.trust.ed25519 import Ed25519Signer, Ed25519VerifyKey

NOW = datetime(2026, 12, 6, 4, 0, tzinfo=timezone.utc)
PKCS8 = serialization.PrivateFormat.PKCS8
PEM = serialization.Encoding.PEM


def _pkcs8(key, encryption=None) -> bytes:
    return key.private_bytes(PEM, PKCS8, encryption or serialization.NoEncryption())


def _written_by_datadir(tmp_path: Path) -> tuple[Ed25519PrivateKey, DataDir]:
    key = Ed25519PrivateKey.generate()
    ddir = DataDir(tmp_path / "data")
    ddir.write_key(key)
    return key, ddir


def test_a_key_written_at_enrollment_signs_what_cryptography_verifies(tmp_path: Path) -> None:
    key, ddir = _written_by_datadir(tmp_path)
    signer = ddir.read_key()
    assert signer.public_key().public_bytes_raw() == key.public_key().public_bytes_raw()
    signature = signer.sign(b"a message")
    assert len(signature) == 64
    key.public_key().verify(signature, b"a message")  # raises if it does not verify
    with pytest.raises(InvalidSignature):
        key.public_key().verify(signature, b"another message")


def test_cryptography_signatures_verify_under_the_lite_key() -> None:
    key = Ed25519PrivateKey.generate()
    lite = Ed25519VerifyKey.from_pem(public_key_pem(key.public_key()))
    assert lite.verifies(key.sign(b"m"), b"m")
    assert not lite.verifies(key.sign(b"m"), b"n")
    assert not lite.verifies(Ed25519PrivateKey.generate().sign(b"m"), b"m")
    assert not lite.verifies(b"short", b"m")


def test_the_public_pem_renders_back_as_cryptography_writes_it_and_the_key_id_agrees() -> None:
    public = Ed25519PrivateKey.generate().public_key()
    pem = public.public_bytes(PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    lite = Ed25519VerifyKey.from_pem(pem)
    assert lite.pem() == pem == public_key_pem(public) == public_key_pem(lite)
    assert ed25519_keyid(lite) == ed25519_keyid(public)
    assert Ed25519VerifyKey.of(public) == lite


def _other_keys() -> dict[str, bytes]:
    ed = Ed25519PrivateKey.generate()
    traditional = serialization.PrivateFormat.TraditionalOpenSSL
    valid = _pkcs8(ed)
    body = b"".join(valid.splitlines()[1:-1])
    return {
        "encrypted": _pkcs8(ed, serialization.BestAvailableEncryption(b"secret")),
        "truncated": b"\n".join(valid.splitlines()[:-1]),
        "garbage": b"not a key at all",
        "empty": b"",
        "not base64": valid.replace(body[:8], b"!!!!!!!!"),
        "public key": public_key_pem(ed.public_key()).encode(),
        "short DER": b"-----BEGIN PRIVATE KEY-----\n"
        + base64.b64encode(base64.b64decode(body)[:40])
        + b"\n-----END PRIVATE KEY-----\n",
        "RSA": _pkcs8(rsa.generate_private_key(public_exponent=65537, key_size=1024)),
        "RSA traditional": rsa.generate_private_key(public_exponent=65537, key_size=1024).private_bytes(
            PEM, traditional, serialization.NoEncryption()
        ),
        "Ed448": _pkcs8(ed448.Ed448PrivateKey.generate()),
        "P-256": _pkcs8(ec.generate_private_key(ec.SECP256R1())),
    }


OTHER_ALGORITHMS = {"RSA": "RSA", "RSA traditional": "RSA", "Ed448": "Ed448", "P-256": "EC"}


@pytest.mark.parametrize("case", sorted(_other_keys()))
def test_a_key_in_any_other_form_is_refused_with_what_was_expected(case: str, tmp_path: Path) -> None:
    pem = _other_keys()[case]
    with pytest.raises(InvalidDocumentError) as info:
        Ed25519Signer.from_pem(pem)
    details = info.value.details
    assert details.get("expected")
    assert details.get("got") is not None
    if case in OTHER_ALGORITHMS:
        assert (info.value.code, details["got"]) == ("private_key_not_ed25519", OTHER_ALGORITHMS[case])
    else:
        assert info.value.code == "invalid_private_key"
    # In the data dir: the same corrupt-state error and messages as before, with the reason.
    ddir = DataDir(tmp_path / "data")
    ddir.write_key(Ed25519PrivateKey.generate())
    ddir.key_path.write_bytes(pem)
    with pytest.raises(CorruptStateError) as corrupt:
        ddir.read_key()
    want = "device key is not Ed25519" if case in OTHER_ALGORITHMS else "device key is unreadable"
    assert (corrupt.value.code, corrupt.value.message) == ("corrupt_state_file", want)
    assert corrupt.value.details["got"] == str(ddir.key_path)
    assert corrupt.value.details["key"]["code"] == info.value.code


@pytest.mark.parametrize(
    "pem",
    [
        "garbage",
        _pkcs8(Ed25519PrivateKey.generate()).decode(),
        ed448.Ed448PrivateKey.generate()
        .public_key()
        .public_bytes(PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
        "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n",
    ],
    ids=["garbage", "private", "Ed448", "truncated"],
)
def test_a_public_key_that_is_not_an_ed25519_spki_is_refused(pem: str) -> None:
    with pytest.raises(InvalidDocumentError) as info:
        Ed25519VerifyKey.from_pem(pem)
    assert info.value.code == "invalid_public_key"
    assert info.value.details.get("expected")


def test_requests_signed_by_the_lite_key_pass_the_servers_check(tmp_path: Path) -> None:
    key, ddir = _written_by_datadir(tmp_path)
    args = {"method": "POST", "path": "/v1/device/report?x=1", "body": b"{}"}
    headers = sign_request(ddir.read_key(), device_id="dev_1", now_s=1_800_000_000.0, **args)
    claims = parse_signed_headers(headers)
    verify_request_signature(key.public_key(), claims, now_s=1_800_000_000.0, **args)


def test_the_lite_director_key_accepts_the_servers_signature_and_rejects_a_tampered_state() -> None:
    director = Ed25519PrivateKey.generate()
    lite = Ed25519VerifyKey.from_pem(public_key_pem(director.public_key()))
    state = {"device_id": "dev_a", "hardware_class": "cpu", "generation": 5, "issued_at": NOW.isoformat()}
    state["expires_at"] = (NOW + timedelta(days=7)).isoformat()
    envelope = sign_desired_state(DesiredState.parse(state), director)
    check = {"device_id": "dev_a", "last_generation": 4, "now": NOW, "time_floor": None}
    assert verify_desired_state(envelope, director_key=lite, **check).generation == 5
    tampered = {**envelope, "signed": {**envelope["signed"], "generation": 6}}
    for key in (lite, director.public_key()):  # the same rule and code for either kind of key
        with pytest.raises(DesiredStateRejectedError) as info:
            verify_desired_state(tampered, director_key=key, **check)
        assert info.value.code == "bad_director_signature"
