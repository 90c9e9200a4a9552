"""The director's signed desired state (ARCHITECTURE 3.2): signing on the server, a pure check on the device.

A device accepts a desired state only if all of these hold:

* the envelope is signed by the director key pinned at enrollment (signatures by other keys are ignored);
* it is addressed to this device;
* its generation is strictly newer than the last one accepted (replays and rollbacks of the channel fail);
* it has not expired, judged against ``max(now, time_floor)`` so a clock set back cannot revive an old
  document (the persisted time floor only moves forward);
* it parses as a valid ``DesiredState``.

The check that each assignment also appears in verified TUF metadata is separate (content trust).

Director key rotation: the signed TUF root carries the current director public key(s) in the field
``x-edgefleet-director-keys``. A device whose pinned key no longer verifies a desired state refreshes its TUF
metadata (following the root chain from its bootstrap root, signed by the offline root keys) and adopts a key
that root names, if that key verifies the document. The server alone cannot rotate the director key.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from edgefleet.protocol.canonical import canonical_json
from edgefleet.protocol.errors import EdgefleetError, InvalidDocumentError
from edgefleet.protocol.wire.base import read_document, read_part
from edgefleet.protocol.wire.desired_state import DesiredState, SignedEnvelope
from edgefleet.trust.ed25519 import Ed25519VerifyKey, RawPublicKey, keyid_of_raw

if TYPE_CHECKING:  # imported where the server signs or loads a key: the device verifies without it
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

    from edgefleet.protocol.desired_state import DesiredState as DesiredStateModel  # the server's, pydantic

__all__ = [
    "DIRECTOR_KEYS_FIELD",
    "DesiredStateRejectedError",
    "director_keys_in_root",
    "ed25519_keyid",
    "effective_now",
    "load_public_key_pem",
    "public_key_pem",
    "sign_desired_state",
    "verify_desired_state",
]


class DesiredStateRejectedError(EdgefleetError):
    """A desired state failed verification; the device keeps its last accepted one."""

    code = "desired_state_rejected"
    http_status = 422


def ed25519_keyid(public_key: RawPublicKey) -> str:
    """The key id of a ``cryptography`` key (the server's) or an ``Ed25519VerifyKey`` (the device's)."""
    return keyid_of_raw(public_key.public_bytes_raw())


def public_key_pem(public_key: RawPublicKey) -> str:
    """The SubjectPublicKeyInfo PEM of either kind of key (the same text ``cryptography`` writes)."""
    return Ed25519VerifyKey.of(public_key).pem()


def load_public_key_pem(pem: str | bytes) -> Ed25519PublicKey:
    """A ``cryptography`` key, for the server (the device reads PEMs with ``Ed25519VerifyKey.from_pem``)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise InvalidDocumentError("not a PEM public key", code="invalid_public_key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidDocumentError(
            "public key is not Ed25519", code="invalid_public_key", expected="Ed25519", got=type(key).__name__
        )
    return key


def sign_desired_state(state: DesiredStateModel, key: Ed25519PrivateKey) -> dict[str, Any]:
    """The envelope ``{"signed": ..., "signatures": [{"keyid", "sig"}]}`` as a JSON-able dict."""
    signed = state.to_dict()
    sig = key.sign(canonical_json(signed))
    keyid = ed25519_keyid(key.public_key())
    return {"signed": signed, "signatures": [{"keyid": keyid, "sig": base64.b64encode(sig).decode()}]}


DIRECTOR_KEYS_FIELD = "x-edgefleet-director-keys"
MAX_DIRECTOR_KEYS = 4
MAX_PEM_CHARS = 1024


def director_keys_in_root(unrecognized_fields: Mapping[str, Any]) -> list[Ed25519PublicKey]:
    """Pure: the director keys a (verified) root's signed part names, in order. Entries that are not
    Ed25519 PEM public keys of bounded size are skipped; at most ``MAX_DIRECTOR_KEYS`` are read."""
    entries = unrecognized_fields.get(DIRECTOR_KEYS_FIELD)
    if not isinstance(entries, list):
        return []
    keys: list[Ed25519PublicKey] = []
    for entry in entries[:MAX_DIRECTOR_KEYS]:
        if not isinstance(entry, str) or len(entry) > MAX_PEM_CHARS:
            continue
        try:
            keys.append(load_public_key_pem(entry))
        except InvalidDocumentError:
            continue
    return keys


def effective_now(now: datetime, time_floor: datetime | None) -> datetime:
    """The time used for expiry checks: never earlier than the persisted floor."""
    return now if time_floor is None or now >= time_floor else time_floor


def verify_desired_state(
    envelope: Any,
    *,
    director_key: RawPublicKey,
    device_id: str,
    last_generation: int,
    now: datetime,
    time_floor: datetime | None,
) -> DesiredState:
    """Return the verified document, or raise ``DesiredStateRejectedError`` with a precise code.

    ``director_key``: an ``Ed25519VerifyKey`` (the device's) or a ``cryptography`` public key (tests,
    benches); either is checked with PyNaCl through its raw bytes."""
    try:
        env = read_part(envelope, SignedEnvelope, kind="desired state envelope")
    except InvalidDocumentError as exc:
        raise DesiredStateRejectedError(
            "desired state envelope is malformed", code="malformed_envelope"
        ) from exc
    key = Ed25519VerifyKey.of(director_key)
    keyid = ed25519_keyid(key)
    message = canonical_json(env.signed)
    if not any(s.keyid == keyid and _verifies(key, s.sig, message) for s in env.signatures):
        raise DesiredStateRejectedError(
            "desired state is not signed by the pinned director key",
            code="bad_director_signature",
            expected=keyid,
            got=[s.keyid for s in env.signatures],
        )
    try:
        state = read_document(env.signed, DesiredState, kind="desired state")
    except InvalidDocumentError as exc:
        raise DesiredStateRejectedError(
            f"signed desired state is invalid: {exc.message}",
            code="invalid_desired_state",
            details=exc.details,
        ) from exc
    if state.device_id != device_id:
        raise DesiredStateRejectedError(
            "desired state is addressed to another device",
            code="wrong_device",
            expected=device_id,
            got=state.device_id,
        )
    if state.generation <= last_generation:
        raise DesiredStateRejectedError(
            "desired state generation is not newer than the last accepted",
            code="stale_generation",
            expected=f"> {last_generation}",
            got=state.generation,
        )
    judged_at = effective_now(now, time_floor)
    if state.expires_at <= judged_at:
        raise DesiredStateRejectedError(
            "desired state has expired",
            code="expired_desired_state",
            expected=f"expires_at > {judged_at.isoformat()}",
            got=state.expires_at.isoformat(),
        )
    return state


def _verifies(key: Ed25519VerifyKey, sig_b64: str, message: bytes) -> bool:
    try:
        signature = base64.b64decode(sig_b64, validate=True)
    except ValueError:
        return False
    return key.verifies(signature, message)
