"""Label selectors: the one grammar every "which devices" question uses (relabel, rollouts, pins, filters).

A selector is a comma-separated list of requirements; a device matches when it meets every one::

    site=plant-3            the label is present with this value   (``==`` is the same)
    line!=2                 the label is absent or has another value
    tier in (gold,silver)   the label is present with one of the values
    tier notin (bronze)     the label is absent or has none of the values
    camera                  the label is present (any value)
    !retired                the label is absent

Keys follow the device label key rule (``[a-z0-9][a-z0-9._/-]{0,62}``); values are 1-128 characters of
``[A-Za-z0-9._:/@+-]`` (no spaces, commas, parentheses, ``=`` or ``!``). Whitespace around tokens is
ignored. A key may appear once per selector (``site=a,site=b`` matches nothing: it is refused as a conflict,
not silently answered with an empty set).

Parsing is pure and refuses with stable codes: ``empty_selector`` (nothing to match on: an empty selector
would select the whole fleet, which an operator asks for by class, never by an empty string),
``invalid_selector`` (does not parse; ``details.expected`` names what the parser wanted at ``details.at``)
and ``selector_conflict`` (a key used twice). A legacy selector, a ``{key: value}`` mapping, is the same as
the ``key=value,...`` conjunction.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from edgefleet.protocol.errors import InvalidDocumentError

__all__ = [
    "MAX_SELECTOR_CHARS",
    "MAX_SELECTOR_REQUIREMENTS",
    "MAX_SELECTOR_VALUES",
    "Requirement",
    "Selector",
    "parse_selector",
    "selector_from_stored",
]

MAX_SELECTOR_CHARS = 1024
MAX_SELECTOR_REQUIREMENTS = 16
MAX_SELECTOR_VALUES = 32
"""Values in one ``in (...)`` / ``notin (...)`` list."""

KEY_PATTERN = r"[a-z0-9][a-z0-9._/-]{0,62}"
VALUE_PATTERN = r"[A-Za-z0-9._:/@+-]{1,128}"
_KEY = re.compile(KEY_PATTERN)
_VALUE = re.compile(VALUE_PATTERN)
_SPACE = re.compile(r"\s*")

Op = Literal["=", "!=", "in", "notin", "exists", "absent"]
_COMPARISONS: tuple[tuple[str, Op], ...] = (("!=", "!="), ("==", "="), ("=", "="))
_SET_OPS: tuple[Op, ...] = ("notin", "in")
GRAMMAR = "key=value, key!=value, key in (v1,v2), key notin (v1,v2), key, !key; joined by ','"


@dataclass(frozen=True)
class Requirement:
    key: str
    op: Op
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        if self.op == "=":
            return value == self.values[0]
        if self.op == "!=":
            return value != self.values[0]
        if self.op == "in":
            return value is not None and value in self.values
        if self.op == "notin":
            return value is None or value not in self.values
        if self.op == "exists":
            return value is not None
        return value is None

    def __str__(self) -> str:
        if self.op in ("=", "!="):
            return f"{self.key}{self.op}{self.values[0]}"
        if self.op in ("in", "notin"):
            return f"{self.key} {self.op} ({','.join(self.values)})"
        return self.key if self.op == "exists" else f"!{self.key}"


@dataclass(frozen=True)
class Selector:
    """A parsed selector: requirements in the order written. ``str()`` is its canonical text."""

    requirements: tuple[Requirement, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)

    @property
    def equalities(self) -> dict[str, str]:
        """The ``key=value`` requirements (what SQL or a legacy reader can use to narrow a scan)."""
        return {r.key: r.values[0] for r in self.requirements if r.op == "="}


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, expected: str) -> InvalidDocumentError:
        return InvalidDocumentError(
            "label selector does not parse",
            code="invalid_selector",
            expected=expected,
            got=self.text[:200],
            details={"at": self.pos, "grammar": GRAMMAR},
        )

    def skip_space(self) -> None:
        match = _SPACE.match(self.text, self.pos)
        self.pos = match.end() if match else self.pos

    def peek(self, literal: str) -> bool:
        return self.text.startswith(literal, self.pos)

    def take(self, pattern: re.Pattern[str], what: str) -> str:
        self.skip_space()
        match = pattern.match(self.text, self.pos)
        if match is None:
            raise self.fail(what)
        self.pos = match.end()
        return match.group(0)

    def take_word(self, word: str) -> bool:
        """``word`` followed by a space or ``(``: the ``in``/``notin`` operators."""
        self.skip_space()
        end = self.pos + len(word)
        if self.text.startswith(word, self.pos) and end < len(self.text) and self.text[end] in " \t(":
            self.pos = end
            return True
        return False

    def requirement(self) -> Requirement:
        self.skip_space()
        if self.peek("!") and not self.peek("!="):
            self.pos += 1
            return Requirement(self.take(_KEY, f"a label key ({KEY_PATTERN})"), "absent")
        key = self.take(_KEY, f"a label key ({KEY_PATTERN})")
        self.skip_space()
        for literal, op in _COMPARISONS:
            if self.peek(literal):
                self.pos += len(literal)
                return Requirement(key, op, (self.take(_VALUE, f"a label value ({VALUE_PATTERN})"),))
        for word in _SET_OPS:
            if self.take_word(word):
                return Requirement(key, word, self.value_list())
        return Requirement(key, "exists")

    def value_list(self) -> tuple[str, ...]:
        self.skip_space()
        if not self.peek("("):
            raise self.fail("'(' opening the value list")
        self.pos += 1
        values = [self.take(_VALUE, f"a label value ({VALUE_PATTERN})")]
        while True:
            self.skip_space()
            if self.peek(")"):
                self.pos += 1
                break
            if not self.peek(","):
                raise self.fail("',' or ')' in the value list")
            self.pos += 1
            values.append(self.take(_VALUE, f"a label value ({VALUE_PATTERN})"))
        if len(values) > MAX_SELECTOR_VALUES:
            raise InvalidDocumentError(
                "too many values in one list",
                code="invalid_selector",
                expected=f"<= {MAX_SELECTOR_VALUES} values",
                got=len(values),
            )
        return tuple(dict.fromkeys(values))

    def selector(self) -> Selector:
        requirements = [self.requirement()]
        while True:
            self.skip_space()
            if self.pos == len(self.text):
                break
            if not self.peek(","):
                raise self.fail("',' between requirements, or the end")
            self.pos += 1
            requirements.append(self.requirement())
        return Selector(tuple(requirements))


def parse_selector(text: str) -> Selector:
    """Pure: the selector ``text`` says, or ``InvalidDocumentError`` (see the module for codes)."""
    if not isinstance(text, str):
        raise InvalidDocumentError(
            "a label selector is a string", code="invalid_selector", got=type(text).__name__
        )
    if len(text) > MAX_SELECTOR_CHARS:
        raise InvalidDocumentError(
            "label selector too long",
            code="invalid_selector",
            expected=f"<= {MAX_SELECTOR_CHARS} characters",
            got=len(text),
        )
    if not text.strip():
        raise InvalidDocumentError(
            "empty label selector: it would match every device",
            code="empty_selector",
            expected="at least one requirement, e.g. site=plant-3",
            got=text,
        )
    selector = _Parser(text).selector()
    if len(selector.requirements) > MAX_SELECTOR_REQUIREMENTS:
        raise InvalidDocumentError(
            "too many requirements in one selector",
            code="invalid_selector",
            expected=f"<= {MAX_SELECTOR_REQUIREMENTS}",
            got=len(selector.requirements),
        )
    seen: set[str] = set()
    for requirement in selector.requirements:
        if requirement.key in seen:
            raise InvalidDocumentError(
                "a label key appears twice in one selector",
                code="selector_conflict",
                expected="each key at most once (use 'key in (a,b)' for alternatives)",
                got=requirement.key,
            )
        seen.add(requirement.key)
    return selector


def selector_from_stored(value: Mapping[str, str] | str | None) -> Selector:
    """A stored selector: a canonical string, or a legacy ``{key: value}`` mapping (``{}`` / ``None``:
    no requirement, every device of the scope)."""
    if isinstance(value, str):
        return parse_selector(value)
    return Selector(tuple(Requirement(k, "=", (v,)) for k, v in sorted((value or {}).items())))
