"""One parser for every key=value option: labels, label filters, rollout targets."""

from __future__ import annotations

import pytest

from edgefleet.cli.pairs import parse_labels, parse_pairs
from edgefleet.protocol.errors import InvalidDocumentError


def test_labels_parse_in_order_and_allow_an_empty_value() -> None:
    assert parse_labels(("site=ward-3", "tier=", "expr=a=b")) == {"site": "ward-3", "tier": "", "expr": "a=b"}
    assert parse_labels(()) == {}


@pytest.mark.parametrize("bad", ["site", "=ward-3", ""])
def test_a_label_without_key_or_equals_is_refused_with_what_arrived(bad: str) -> None:
    with pytest.raises(InvalidDocumentError) as err:
        parse_labels(("ok=1", bad))
    assert err.value.code == "invalid_labels"
    assert err.value.details == {"expected": "key=value", "got": bad}


def test_one_key_with_two_values_is_refused_but_a_repeat_is_not() -> None:
    assert parse_labels(("site=a", "site=a")) == {"site": "a"}
    with pytest.raises(InvalidDocumentError) as err:
        parse_labels(("site=a", "site=b"))
    assert err.value.details["got"] == ["a", "b"]


def test_targets_need_a_value() -> None:
    assert parse_pairs(("cpu=abc",), what="--target", code="invalid_target", require_value=True) == {
        "cpu": "abc"
    }
    with pytest.raises(InvalidDocumentError) as err:
        parse_pairs(("cpu=",), what="--target", code="invalid_target", require_value=True)
    assert err.value.code == "invalid_target"
