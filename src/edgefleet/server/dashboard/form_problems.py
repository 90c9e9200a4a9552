"""A refused form, shown next to its fields: the error's stable code and message, and per field what was
expected and what arrived, exactly as the API's error body says them (``details.errors`` or
``details.expected``/``details.got``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edgefleet.protocol.errors import EdgefleetError

__all__ = ["FormProblems", "Problem", "form_problems"]


@dataclass(frozen=True)
class Problem:
    field: str
    """The API's name for the field (``spec.stages.0.count``), or ``""`` when the error names none."""
    message: str
    expected: Any = None
    got: Any = None


@dataclass(frozen=True)
class FormProblems:
    code: str
    message: str
    status: int
    by_field: dict[str, list[Problem]] = field(default_factory=dict)
    """Form field -> its problems."""
    general: list[Problem] = field(default_factory=list)
    """Problems no form field owns."""

    def of(self, name: str) -> list[Problem]:
        return self.by_field.get(name, [])


def form_problems(
    exc: EdgefleetError, *, body_fields: Mapping[str, str], code_fields: Mapping[str, str]
) -> FormProblems:
    """Spread ``exc`` over the form: a validation error's entries by the first part of their field path
    (``body_fields``: API field -> form field), any other error on the field its code concerns
    (``code_fields``), else above the form."""
    problems = FormProblems(code=exc.code, message=exc.message, status=exc.http_status)
    errors = exc.details.get("errors")
    if isinstance(errors, list) and errors:
        for entry in errors:
            path = str(entry.get("field", ""))
            problem = Problem(path, str(entry.get("expected", "")), None, entry.get("got"))
            owner = body_fields.get(path.split(".", 1)[0])
            if owner is None:
                problems.general.append(problem)
            else:
                problems.by_field.setdefault(owner, []).append(problem)
        return problems
    problem = Problem("", exc.message, exc.details.get("expected"), exc.details.get("got"))
    owner = code_fields.get(exc.code)
    if owner is None:
        problems.general.append(problem)
    else:
        problems.by_field[owner] = [problem]
    return problems
