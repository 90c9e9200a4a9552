import base64
from datetime import datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgefleet.protocol.canonical import canonical_json
from edgefleet.protocol.desired_state import DesiredState
from edgefleet.trust.director import (
    DesiredStateRejectedError,
    ed25519_keyid,
    sign_desired_state,
    verify_desired_state,
)

DIRECTOR = Ed25519PrivateKey.generate()
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)


def _state(**over):
    doc = {
        "device_id": "dev_a",
        "hardware_class": "medical-cart-cpu",
        "generation": 5,
        "issued_at": NOW,
        "expires_at": NOW + timedelta(days=7),
    }
    doc.update(over)
    return DesiredState(**doc)


def _verify(envelope, *, last_generation=4, now=NOW, floor=None, device_id="dev_a"):
    return verify_desired_state(
        envelope,
        director_key=DIRECTOR.public_key(),
        device_id=device_id,
        last_generation=last_generation,
        now=now,
        time_floor=floor,
    )


def test_a_fresh_state_for_this_device_is_accepted():
    assert _verify(sign_desired_state(_state(), DIRECTOR)).generation == 5


@pytest.mark.parametrize(
    ("envelope", "kwargs", "code"),
    [
        (sign_desired_state(_state(), Ed25519PrivateKey.generate()), {}, "bad_director_signature"),
        (sign_desired_state(_state(device_id="dev_b"), DIRECTOR), {}, "wrong_device"),
        (sign_desired_state(_state(), DIRECTOR), {"last_generation": 5}, "stale_generation"),
        (sign_desired_state(_state(generation=3), DIRECTOR), {}, "stale_generation"),
        (sign_desired_state(_state(), DIRECTOR), {"now": NOW + timedelta(days=8)}, "expired_desired_state"),
        ({"signed": {}, "signatures": []}, {}, "malformed_envelope"),
        ("garbage", {}, "malformed_envelope"),
    ],
)
def test_rejections_have_precise_codes(envelope, kwargs, code):
    with pytest.raises(DesiredStateRejectedError) as info:
        _verify(envelope, **kwargs)
    assert info.value.code == code


def test_a_clock_set_back_cannot_revive_an_expired_document():
    old = sign_desired_state(_state(expires_at=NOW + timedelta(hours=1)), DIRECTOR)
    # The device has seen a document issued two days later: its floor is there.
    floor = NOW + timedelta(days=2)
    with pytest.raises(DesiredStateRejectedError) as info:
        _verify(old, now=NOW, floor=floor)
    assert info.value.code == "expired_desired_state"


def test_tampering_with_the_signed_body_breaks_the_signature():
    env = sign_desired_state(_state(), DIRECTOR)
    env["signed"]["generation"] = 99
    with pytest.raises(DesiredStateRejectedError) as info:
        _verify(env)
    assert info.value.code == "bad_director_signature"


def test_a_signed_but_invalid_document_is_rejected():
    signed = sign_desired_state(_state(), DIRECTOR)["signed"]
    signed["generation"] = "x"
    sig = base64.b64encode(DIRECTOR.sign(canonical_json(signed))).decode()
    env = {"signed": signed, "signatures": [{"keyid": ed25519_keyid(DIRECTOR.public_key()), "sig": sig}]}
    with pytest.raises(DesiredStateRejectedError) as info:
        _verify(env)
    assert info.value.code == "invalid_desired_state"


def test_the_root_names_the_director_key_and_a_rotation_names_the_new_one(tmp_path):
    from tuf.api.metadata import Metadata, Root

    from edgefleet.trust.director import director_keys_in_root, public_key_pem
    from edgefleet.trust.keys import init_keys, rotate_role_key

    keys = tmp_path / "keys"
    init_keys(keys, now=NOW)
    v1 = Metadata[Root].from_bytes((keys / "root.json").read_bytes())
    named = [public_key_pem(k) for k in director_keys_in_root(v1.signed.unrecognized_fields)]
    assert named == [(keys / "director.pub").read_text()]
    rotate_role_key(keys, "director", now=NOW)
    v2 = Metadata[Root].from_bytes((keys / "root.json").read_bytes())
    v1.verify_delegate("root", v2)  # signed by the root keys of version 1: devices follow the chain
    assert v2.signed.version == 2
    named2 = [public_key_pem(k) for k in director_keys_in_root(v2.signed.unrecognized_fields)]
    assert named2 == [(keys / "director.pub").read_text()] != named
    assert (keys / "director.v1.key.old").exists()  # kept until the servers have switched
    # The field is part of what the root keys signed: editing it breaks the signature.
    v2.signed.unrecognized_fields["x-edgefleet-director-keys"] = named
    from tuf.api.exceptions import UnsignedMetadataError

    with pytest.raises(UnsignedMetadataError, match=r"signed by 0/1 keys"):
        v1.verify_delegate("root", v2)


def test_director_keys_in_root_skips_junk_and_is_bounded():
    from edgefleet.trust.director import MAX_DIRECTOR_KEYS, director_keys_in_root, public_key_pem

    pems = [public_key_pem(Ed25519PrivateKey.generate().public_key()) for _ in range(MAX_DIRECTOR_KEYS + 2)]
    field = "x-edgefleet-director-keys"
    assert director_keys_in_root({}) == []
    assert director_keys_in_root({field: "not a list"}) == []
    got = director_keys_in_root({field: [7, "junk", "x" * 5000, *pems]})
    assert [public_key_pem(k) for k in got] == pems[: MAX_DIRECTOR_KEYS - 3]
