"""Device groups and lifecycle: relabel one device or a label selection, decommission a device, and pin an
artifact on a label selection. Operator role; every change writes audit rows in its own transaction."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from edgefleet.protocol.document import NAME_PATTERN
from edgefleet.protocol.selector import parse_selector
from edgefleet.server.api.dependencies import Ctx, DbSession, Operator
from edgefleet.server.api.devices import DeviceIdPath
from edgefleet.server.api.json_body import StrictJsonRoute
from edgefleet.server.services import devices as devices_svc
from edgefleet.server.services import enrollment as enroll_svc
from edgefleet.server.services import group_pins
from edgefleet.server.services import lifecycle as svc
from edgefleet.server.services.request_bodies import SELECTOR_FIELD, SelectionPin

__all__ = ["router"]

router = APIRouter(tags=["devices"], route_class=StrictJsonRoute)


class LabelsChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    set: dict[str, str] = Field(default_factory=dict, json_schema_extra=enroll_svc.LABELS_SCHEMA)
    remove: list[str] = Field(default_factory=list, max_length=enroll_svc.MAX_DEVICE_LABELS)

    def change(self) -> svc.LabelChange:
        return svc.LabelChange(set=self.set, remove=tuple(self.remove))


class SelectionRelabel(LabelsChange):
    selector: str = SELECTOR_FIELD
    hardware_class: str | None = Field(default=None, max_length=63, pattern=NAME_PATTERN)
    dry_run: bool = False


class DecommissionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="", max_length=2000)


@router.patch("/v1/devices/{device_id}/labels")
def relabel_device(
    device_id: DeviceIdPath,
    body: LabelsChange,
    request: Request,
    ctx: Ctx,
    session: DbSession,
    actor: Operator,
) -> dict[str, Any]:
    now = ctx.clock()
    svc.relabel(session, change=body.change(), device_id=device_id, actor=actor.name, now=now)
    row = devices_svc.get_device(session, device_id)
    return devices_svc.device_to_wire(row, now=now, thresholds=request.app.state.devices.thresholds)


@router.post("/v1/devices/relabel")
def relabel_selection(
    body: SelectionRelabel, ctx: Ctx, session: DbSession, actor: Operator
) -> dict[str, Any]:
    done = svc.relabel(
        session,
        change=body.change(),
        selector=parse_selector(body.selector),
        hardware_class=body.hardware_class,
        actor=actor.name,
        now=ctx.clock(),
        dry_run=body.dry_run,
    )
    return done.to_wire()


@router.post("/v1/devices/{device_id}/decommission")
def decommission_device(
    device_id: DeviceIdPath,
    request: Request,
    ctx: Ctx,
    session: DbSession,
    actor: Operator,
    body: DecommissionBody | None = None,
) -> dict[str, Any]:
    now = ctx.clock()
    reason = (body or DecommissionBody()).reason
    svc.decommission_device(session, device_id, reason=reason, actor=actor.name, now=now)
    request.app.state.devices.cache.forget(device_id)  # at once here; other replicas at their next epoch read
    row = devices_svc.get_device(session, device_id)
    return devices_svc.device_to_wire(row, now=now, thresholds=request.app.state.devices.thresholds)


@router.post("/v1/pins/by-selector")
def pin_selection(body: SelectionPin, ctx: Ctx, session: DbSession, actor: Operator) -> dict[str, Any]:
    done = group_pins.pin_selection(
        session,
        selector=parse_selector(body.selector),
        slot=body.slot,
        artifact_id=body.artifact_id,
        hardware_class=body.hardware_class,
        actor=actor.name,
        now=ctx.clock(),
        dry_run=body.dry_run,
    )
    return done.to_wire()
