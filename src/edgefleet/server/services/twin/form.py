"""A plan request from the dashboard's form fields (pure): model, targets, labels, spec and seed.

The form carries what ``rollout create`` sends: ``class=artifact`` and ``key=value`` lines, and the rollout
spec as JSON (the same document as ``rollout create --spec``); the spec is then validated like the API's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.server.services.rollouts.spec import RolloutSpec
from edgefleet.server.services.twin.plan import parse_rollout_spec

__all__ = ["PlanRequest", "name_value_pairs", "plan_request"]

MAX_LINES = 32


@dataclass(frozen=True)
class PlanRequest:
    model: str
    targets: dict[str, str]
    selector: dict[str, str]
    spec: RolloutSpec
    seed: int


def name_value_pairs(text: str, *, what: str, code: str) -> dict[str, str]:
    """``name=value`` lines (or comma-separated) as a dict, refused with ``code`` naming the bad line."""
    out: dict[str, str] = {}
    lines = [line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()]
    if len(lines) > MAX_LINES:
        raise InvalidDocumentError(
            f"too many {what}", code=code, expected=f"at most {MAX_LINES}", got=len(lines)
        )
    for line in lines:
        key, sep, value = line.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise InvalidDocumentError(
                f"{what} are name=value", code=code, expected="name=value", got=line[:200]
            )
        out[key.strip()] = value.strip()
    return out


def plan_request(form: dict[str, str]) -> PlanRequest:
    """The form's fields as a plan request, or an error naming the field that is wrong."""
    model = form.get("model", "").strip()
    if not model or len(model) > 63:
        raise InvalidDocumentError(
            "a model name is needed", code="invalid_rollout", expected="1-63 characters"
        )
    targets = name_value_pairs(form.get("targets", ""), what="targets", code="invalid_target")
    if not targets:
        raise InvalidDocumentError(
            "a rollout needs at least one target", code="invalid_rollout", expected="class=artifact lines"
        )
    selector = name_value_pairs(form.get("labels", ""), what="labels", code="invalid_labels")
    raw = form.get("spec", "").strip()
    try:
        data: Any = json.loads(raw) if raw else {}
    except ValueError as exc:
        raise InvalidDocumentError(
            "the spec is not valid JSON", code="malformed_json", expected="a JSON object", got=str(exc)[:200]
        ) from exc
    seed_text = form.get("seed", "").strip() or "0"
    if not seed_text.isdigit() or len(seed_text) > 9:
        raise InvalidDocumentError(
            "invalid seed", code="invalid_seed", expected="0..999999999", got=seed_text[:20]
        )
    return PlanRequest(model, targets, selector, parse_rollout_spec(data), int(seed_text))
