"""The label selector grammar: what parses, what it matches, and the stable codes for what does not."""

from __future__ import annotations

import pytest

from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.protocol.selector import parse_selector, selector_from_stored

LABELS = {"site": "plant-3", "line": "2", "tier": "gold", "camera": "yes"}


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("site=plant-3", True),
        ("site==plant-3", True),
        ("site=plant-4", False),
        ("site=plant-3,line!=2", False),
        ("site=plant-3, line != 3", True),
        ("retired!=yes", True),  # absent counts as "another value"
        ("tier in (gold,silver)", True),
        ("tier in (bronze)", False),
        ("tier notin (bronze, silver)", True),
        ("zone notin (a)", True),
        ("zone in (a)", False),
        ("camera", True),
        ("zone", False),
        ("!zone", True),
        ("!camera", False),
        ("  site = plant-3 ,  !retired  ", True),
    ],
)
def test_selector_matches(text: str, matches: bool) -> None:
    assert parse_selector(text).matches(LABELS) is matches


@pytest.mark.parametrize(
    "text",
    ["site=plant-3,line!=2", "tier in (gold,silver)", "tier notin (bronze)", "camera", "!zone"],
)
def test_canonical_text_round_trips(text: str) -> None:
    parsed = parse_selector(text)
    assert str(parsed) == text
    assert parse_selector(str(parsed)) == parsed


@pytest.mark.parametrize(
    ("text", "code", "at"),
    [
        ("", "empty_selector", None),
        ("   ", "empty_selector", None),
        ("site=", "invalid_selector", 5),
        ("=plant-3", "invalid_selector", 0),
        ("Site=a", "invalid_selector", 0),
        ("site=a b", "invalid_selector", 7),
        ("site=a,", "invalid_selector", 7),
        ("site=a;line=2", "invalid_selector", 6),
        ("tier in gold", "invalid_selector", 8),
        ("tier in (gold", "invalid_selector", 13),
        ("tier in ()", "invalid_selector", 9),
        ("site=a,site=b", "selector_conflict", None),
        ("site=a,!site", "selector_conflict", None),
    ],
)
def test_bad_selectors_are_refused_with_stable_codes(text: str, code: str, at: int | None) -> None:
    with pytest.raises(InvalidDocumentError) as caught:
        parse_selector(text)
    assert caught.value.code == code
    assert "expected" in caught.value.details
    if at is not None:
        assert caught.value.details["at"] == at


def test_bounds() -> None:
    with pytest.raises(InvalidDocumentError, match="too long"):
        parse_selector("a=" + "x" * 1100)
    many = ",".join(f"k{i}=v" for i in range(17))
    with pytest.raises(InvalidDocumentError, match="too many requirements"):
        parse_selector(many)
    values = ",".join(f"v{i}" for i in range(33))
    with pytest.raises(InvalidDocumentError, match="too many values"):
        parse_selector(f"k in ({values})")


def test_stored_forms() -> None:
    assert selector_from_stored({"site": "plant-3"}).matches(LABELS)
    assert not selector_from_stored({"site": "plant-3", "line": "1"}).matches(LABELS)
    assert selector_from_stored({}).matches({})
    assert selector_from_stored(None).matches(LABELS)
    assert selector_from_stored("line!=1").matches(LABELS)
    assert str(selector_from_stored({"b": "2", "a": "1"})) == "a=1,b=2"
    assert parse_selector("site=plant-3,line!=2,camera").equalities == {"site": "plant-3"}
