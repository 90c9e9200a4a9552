"""Rollout calls of the control-plane client: create, list, inspect and steer staged rollouts."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from edgefleet.protocol.document import validation_details
from edgefleet.protocol.errors import EdgefleetError, InvalidDocumentError

__all__ = ["ROLLOUT_ACTIONS", "ROLLOUT_STATUSES", "RolloutInfo", "RolloutPage", "RolloutsApi", "rollout_id"]

ROLLOUT_ACTIONS = ("pause", "resume", "promote", "abort")
ROLLOUT_STATUSES = ("running", "paused", "halted", "completed", "aborted")
_ROLLOUT_ID = re.compile(r"^ro_[0-9a-f]{16}$")
MAX_REASON_CHARS = 2000


class RolloutInfo(BaseModel):
    """A rollout as the server describes it. ``stage_detail``, ``events`` and ``spec`` come with the detailed
    view (create, get, actions); the listing leaves them empty."""

    model_config = ConfigDict(extra="allow")

    id: str
    model: str
    slot: str = "default"
    targets: dict[str, dict[str, str | None]] = {}
    selector: dict[str, str] | str = {}
    """A selector expression, or the legacy ``{key: value}`` labels."""
    status: str
    stage: int
    stages: int
    stage_started_at: str
    halt_reason: dict[str, Any] | None = None
    last_decision: dict[str, Any] | None = None
    created_by: str = ""
    created_at: str = ""
    updated_at: str = ""
    spec: dict[str, Any] | None = None
    stage_detail: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    transfer: dict[str, Any] | None = None
    """Detailed view: the members' downloads of the target vs full downloads (model deltas)."""

    @property
    def active(self) -> bool:
        return self.status in ("running", "paused")


class RolloutPage(BaseModel):
    model_config = ConfigDict(extra="allow")

    items: list[RolloutInfo]
    total: int
    limit: int = 50
    offset: int = 0


def _parse_rollout(model: type[BaseModel], data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise EdgefleetError(
            f"unexpected answer from the server for {model.__name__}",
            code="unexpected_response",
            details={"errors": validation_details(exc)},
        ) from exc


def rollout_id(value: str) -> str:
    if not isinstance(value, str) or not _ROLLOUT_ID.fullmatch(value):
        raise InvalidDocumentError(
            "invalid rollout id", code="invalid_rollout_id", expected="ro_<16 hex>", got=str(value)[:80]
        )
    return value


class RolloutsApi:
    """Mixed into ``EdgefleetClient``; relies on its ``_json``."""

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:  # pragma: no cover - from the client
        raise NotImplementedError

    def create_rollout(
        self,
        model: str,
        targets: Mapping[str, str],
        *,
        selector: Mapping[str, str] | str | None = None,
        slot: str = "default",
        spec: Mapping[str, Any] | None = None,
    ) -> RolloutInfo:
        """Start a rollout of ``model``: per hardware class, to ``targets[class]`` (an artifact id).

        ``spec`` is the rollout spec as JSON (stages, gates, ``enrolling_devices``); the server's defaults
        apply to what it leaves out and the server validates it."""
        if not targets:
            raise InvalidDocumentError(
                "a rollout needs at least one target", code="invalid_rollout", expected="{class: artifact}"
            )
        body: dict[str, Any] = {
            "model": model,
            "targets": dict(targets),
            "selector": selector if isinstance(selector, str) else dict(selector or {}),
            "slot": slot,
        }
        if spec is not None:
            body["spec"] = dict(spec)
        return _parse_rollout(RolloutInfo, self._json("POST", "/v1/rollouts", json=body))

    def plan_rollout(
        self,
        model: str,
        targets: Mapping[str, str],
        *,
        selector: Mapping[str, str] | str | None = None,
        slot: str = "default",
        spec: Mapping[str, Any] | None = None,
        seed: int = 0,
        compare: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The dry run of ``create_rollout``: the same request, run by the server on its twin of the fleet
        (``POST /v1/rollouts/dry-run``); nothing starts. Returns the plan (``runs``, ``notes``)."""
        if not targets:
            raise InvalidDocumentError(
                "a rollout needs at least one target", code="invalid_rollout", expected="{class: artifact}"
            )
        body: dict[str, Any] = {
            "model": model,
            "targets": dict(targets),
            "selector": selector if isinstance(selector, str) else dict(selector or {}),
            "slot": slot,
            "seed": seed,
        }
        if spec is not None:
            body["spec"] = dict(spec)
        if compare is not None:
            body["compare"] = dict(compare)
        answer = self._json("POST", "/v1/rollouts/dry-run", json=body)
        if not isinstance(answer, dict) or not isinstance(answer.get("runs"), list):
            raise EdgefleetError(
                "unexpected answer from the server for a dry run",
                code="unexpected_response",
                got=str(answer)[:200],
            )
        return answer

    def list_rollouts(
        self,
        *,
        status: str | None = None,
        model: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> RolloutPage:
        if status is not None and status not in ROLLOUT_STATUSES:
            raise InvalidDocumentError(
                "unknown rollout status", code="invalid_status", expected=list(ROLLOUT_STATUSES), got=status
            )
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status is not None:
            params["status"] = status
        if model is not None:
            params["model"] = model
        return _parse_rollout(RolloutPage, self._json("GET", "/v1/rollouts", params=params))

    def get_rollout(self, rollout: str) -> RolloutInfo:
        return _parse_rollout(RolloutInfo, self._json("GET", f"/v1/rollouts/{rollout_id(rollout)}"))

    def rollout_action(self, rollout: str, action: str, *, reason: str = "") -> RolloutInfo:
        """``pause``, ``resume``, ``promote`` (grant the current stage's manual promotion) or ``abort``
        (halts and rolls back every device the rollout touched). Audited with the token's identity."""
        if action not in ROLLOUT_ACTIONS:
            raise InvalidDocumentError(
                "unknown rollout action", code="invalid_action", expected=list(ROLLOUT_ACTIONS), got=action
            )
        if len(reason) > MAX_REASON_CHARS:
            raise InvalidDocumentError(
                "reason too long",
                code="invalid_reason",
                expected=f"<= {MAX_REASON_CHARS} chars",
                got=len(reason),
            )
        path = f"/v1/rollouts/{rollout_id(rollout)}/{action}"
        return _parse_rollout(RolloutInfo, self._json("POST", path, json={"reason": reason}))
