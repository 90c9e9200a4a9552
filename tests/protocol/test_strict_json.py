"""The one strict JSON reader: what every role refuses, with ``malformed_json`` and without echoing it."""

from __future__ import annotations

import json

import pytest

from edgefleet.protocol.canonical import MAX_JSON_DEPTH, loads_strict, parse_json_bounded
from edgefleet.protocol.errors import InvalidDocumentError, PayloadTooLargeError


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"a": NaN}', "non-finite number NaN"),
        (b'{"a": Infinity}', "non-finite number Infinity"),
        (b"[-Infinity]", "non-finite number -Infinity"),
        (b'{"a": 1e400}', "number out of range: 1e400"),
        (b'{"a": -1e400}', "number out of range: -1e400"),
        (b'{"a": 9223372036854775808}', "integer out of range"),
        (b'{"a": ' + b"9" * 5000 + b"}", "integer out of range"),
        (b'{"a": "\\ud800"}', "lone UTF-16 surrogate"),
        (b'{"\\udfff": 1}', "lone UTF-16 surrogate"),
        (b'["ok", ["\\udbff x"]]', "lone UTF-16 surrogate"),
        (b'{"a": "\xff\xfe"}', "not UTF-8"),
        (b"\xef\xbb\xbf{}", "BOM"),
        (b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), f"nested deeper than {MAX_JSON_DEPTH}"),
        (b"[" * 100_000 + b"]" * 100_000, f"nested deeper than {MAX_JSON_DEPTH}"),
        (b'{"a": 1', "Expecting"),
    ],
)
def test_refused_with_a_reason_and_a_stable_code(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidDocumentError) as caught:
        loads_strict(raw, what="body")
    err = caught.value
    assert err.code == "malformed_json"
    assert reason in err.details["got"]
    json.dumps(err.to_body(), allow_nan=False).encode("utf-8")  # the error itself is strict JSON
    assert "\ud800" not in json.dumps(err.to_body(), ensure_ascii=False)


def test_ordinary_documents_pass_unchanged() -> None:
    doc = {
        "i": -(2**63),
        "j": 2**63 - 1,
        "f": 1.5e300,
        "tiny": 5e-324,
        "s": "ünïcödé \U0001f600 \\ud800 as text",
        "deep": json.loads("[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1)),
    }
    raw = json.dumps(doc).encode()
    assert loads_strict(raw) == doc
    assert loads_strict(raw.decode()) == doc


def test_a_paired_surrogate_escape_is_one_character() -> None:
    assert loads_strict(b'"\\ud83d\\ude00"') == "\U0001f600"


def test_bounded_checks_size_first_then_strictness() -> None:
    with pytest.raises(PayloadTooLargeError):
        parse_json_bounded(b"[" + b"1," * 100 + b"1]", max_bytes=50)
    with pytest.raises(InvalidDocumentError) as caught:
        parse_json_bounded('{"a": NaN}', max_bytes=50)
    assert caught.value.code == "malformed_json"
    with pytest.raises(InvalidDocumentError):
        parse_json_bounded('"\ud800"', max_bytes=50)  # a str holding a surrogate is not UTF-8 either
