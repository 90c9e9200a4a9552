import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgefleet.protocol.errors import AuthenticationError
from edgefleet.protocol.request_signing import (
    HEADER_SIGNATURE,
    parse_signed_headers,
    sign_request,
    verify_request_signature,
)

KEY = Ed25519PrivateKey.generate()
NOW = 1_800_000_000.0


def _signed(**over):
    args = {"device_id": "dev_1", "method": "POST", "path": "/v1/device/report", "body": b"{}", "now_s": NOW}
    args.update(over)
    return sign_request(KEY, **args)


def _verify(headers, *, key=KEY, method="POST", path="/v1/device/report", body=b"{}", now_s=NOW):
    claims = parse_signed_headers(headers)
    verify_request_signature(key.public_key(), claims, method=method, path=path, body=body, now_s=now_s)
    return claims


def test_a_signed_request_verifies_and_names_its_device():
    assert _verify(_signed()).device_id == "dev_1"


@pytest.mark.parametrize(
    "tamper",
    [
        {"method": "PUT"},
        {"path": "/v1/device/report?x=1"},
        {"body": b'{"a":1}'},
    ],
)
def test_moving_the_signature_to_another_request_fails(tamper):
    with pytest.raises(AuthenticationError) as info:
        _verify(_signed(), **tamper)
    assert info.value.code == "bad_signature"


def test_another_devices_key_does_not_verify():
    with pytest.raises(AuthenticationError, match="does not verify"):
        _verify(_signed(), key=Ed25519PrivateKey.generate())


def test_claiming_another_device_id_breaks_the_signature():
    headers = _signed()
    headers["x-edgefleet-device"] = "dev_2"
    with pytest.raises(AuthenticationError):
        _verify(headers)


def test_old_timestamps_are_refused_with_server_time_in_details():
    with pytest.raises(AuthenticationError) as info:
        _verify(_signed(now_s=NOW - 301))
    assert info.value.code == "clock_skew"
    assert str(int(NOW)) in info.value.details["expected"]


def test_missing_or_garbage_headers_are_unsigned_requests():
    with pytest.raises(AuthenticationError) as info:
        parse_signed_headers({})
    assert info.value.code == "unsigned_request"
    headers = _signed()
    headers[HEADER_SIGNATURE] = "!!!"
    with pytest.raises(AuthenticationError):
        parse_signed_headers(headers)
