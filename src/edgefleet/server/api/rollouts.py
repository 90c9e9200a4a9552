"""/v1/rollouts: create, inspect and steer staged rollouts."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from edgefleet.server.api.dependencies import Ctx, DbSession, Operator, PageQuery, Viewer
from edgefleet.server.api.id_paths import register_id_path
from edgefleet.server.api.json_body import StrictJsonRoute
from edgefleet.server.services.request_bodies import RolloutCreate
from edgefleet.server.services.rollouts import service as svc
from edgefleet.server.services.rollouts.spec import RolloutSpec
from edgefleet.server.services.twin import control_plane as twin

__all__ = ["router"]

router = APIRouter(prefix="/v1/rollouts", tags=["rollouts"], route_class=StrictJsonRoute)
ROLLOUT_ID_REGEX = "ro_[0-9a-f]{16}"
RolloutIdPath = Annotated[str, Path(pattern=f"^{ROLLOUT_ID_REGEX}$")]

# ``GET /v1/rollouts/dry-run`` is a 405 naming ``POST``, not a GET of a rollout called ``dry-run``
register_id_path(
    "rollout_id", prefix="/v1/rollouts/", regex=ROLLOUT_ID_REGEX, code="invalid_rollout_id",
    expected="ro_<16 hex>",
)  # fmt: skip


class DryRunBody(RolloutCreate):
    seed: int = Field(default=0, ge=0, le=2**31)
    horizon_s: float = Field(default=7 * 86400, gt=0, le=31 * 86400)
    compare: RolloutSpec | None = Field(default=None, description="a second spec run on the same fleet")


class ActionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="", max_length=2000)


def _thresholds(request: Request) -> Any:
    return request.app.state.devices.thresholds


@router.post("", status_code=201)
def create_rollout(
    body: RolloutCreate, request: Request, ctx: Ctx, session: DbSession, actor: Operator
) -> dict[str, Any]:
    row = svc.create_rollout(
        session,
        model=body.model,
        targets=body.targets,
        selector=body.selector,
        slot=body.slot,
        spec=body.spec,
        actor=actor.name,
        now=ctx.clock(),
        thresholds=_thresholds(request),
    )
    return svc.rollout_to_wire(session, row, detail=True)


@router.post("/dry-run")
def dry_run(body: DryRunBody, request: Request, ctx: Ctx, session: DbSession, _: Operator) -> dict[str, Any]:
    """What ``POST /v1/rollouts`` with this body would do, run on the fleet's twin in virtual time."""
    return twin.dry_run(
        session,
        model=body.model,
        targets=body.targets,
        selector=body.selector,
        slot=body.slot,
        spec=body.spec,
        now=ctx.clock(),
        thresholds=_thresholds(request),
        seed=body.seed,
        horizon_s=body.horizon_s,
        compare=body.compare,
    )


@router.get("")
def list_rollouts(
    session: DbSession,
    page: PageQuery,
    _: Viewer,
    status: Annotated[str | None, Query(pattern=r"^(running|paused|halted|completed|aborted)$")] = None,
    model: Annotated[str | None, Query(max_length=63)] = None,
) -> dict[str, Any]:
    result = svc.list_rollouts(session, limit=page.limit, offset=page.offset, status=status, model=model)
    return result.to_wire([svc.rollout_to_wire(session, r) for r in result.items])


@router.get("/{rollout_id:rollout_id}")
def get_rollout(rollout_id: RolloutIdPath, session: DbSession, _: Viewer) -> dict[str, Any]:
    return svc.rollout_to_wire(session, svc.get_rollout(session, rollout_id), detail=True)


@router.post("/{rollout_id:rollout_id}/{action}")
def act(
    rollout_id: RolloutIdPath,
    action: Annotated[str, Path(pattern=r"^(pause|resume|promote|abort)$")],
    body: ActionBody,
    ctx: Ctx,
    session: DbSession,
    actor: Operator,
) -> dict[str, Any]:
    row = svc.operator_action(
        session, rollout_id, action, actor=actor.name, now=ctx.clock(), reason=body.reason
    )
    return svc.rollout_to_wire(session, row, detail=True)
