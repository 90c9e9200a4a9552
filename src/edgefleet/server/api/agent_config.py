"""/v1/config: remote agent configuration layers (class, label selector, device), and one device's view."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from edgefleet.protocol.agent_config import SETTINGS
from edgefleet.server.api.dependencies import Ctx, DbSession, Operator, Viewer
from edgefleet.server.api.devices import DeviceIdPath
from edgefleet.server.api.json_body import StrictJsonRoute
from edgefleet.server.services import agent_config as svc
from edgefleet.server.services.device_config import device_config_view

__all__ = ["router"]

router = APIRouter(tags=["config"], route_class=StrictJsonRoute)


class ConfigSet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scope: Literal["class", "selector", "device"]
    target: str = Field(min_length=1, max_length=255, description="class name, k=v[,k=v] or device id")
    settings: dict[str, Any] = Field(max_length=32, description="setting -> value (see GET /v1/config)")


class ConfigUnset(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scope: Literal["class", "selector", "device"]
    target: str = Field(min_length=1, max_length=255)
    settings: list[str] = Field(default_factory=list, max_length=32, description="empty: every setting")


def _settings_table() -> dict[str, Any]:
    return {s.name: {"expected": s.expected(), "live": s.live, "help": s.help} for s in SETTINGS.values()}


@router.get("/v1/config")
def list_config(session: DbSession, _: Viewer) -> dict[str, Any]:
    layers = svc.list_layers(session)
    return {
        "items": [svc.layer_to_wire(layer) for layer in layers],
        "total": len(layers),
        "settings": _settings_table(),
    }


@router.put("/v1/config")
def set_config(body: ConfigSet, ctx: Ctx, session: DbSession, actor: Operator) -> dict[str, Any]:
    layer = svc.set_config(session, body.scope, body.target, body.settings, actor=actor.name, now=ctx.clock())
    return svc.layer_to_wire(layer)


@router.post("/v1/config/unset")
def unset_config(body: ConfigUnset, ctx: Ctx, session: DbSession, actor: Operator) -> dict[str, Any]:
    layer = svc.unset_config(
        session, body.scope, body.target, body.settings, actor=actor.name, now=ctx.clock()
    )
    return {"layer": svc.layer_to_wire(layer) if layer is not None else None}


@router.get("/v1/devices/{device_id}/config")
def device_config(device_id: DeviceIdPath, ctx: Ctx, session: DbSession, _: Viewer) -> dict[str, Any]:
    return device_config_view(session, device_id, now=ctx.clock())
