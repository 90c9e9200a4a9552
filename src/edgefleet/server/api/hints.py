"""Wake-up hints, the device's side of the API: where to listen (``GET /v1/device/hints``, signed).

The answer names the broker, the device's own topic and its broker credentials (username = device id,
password derived from the server's MQTT secret). A server without a broker answers ``404
hints_not_configured`` and the agent polls on its interval, as it always does.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session

from edgefleet.protocol.errors import NotFoundError
from edgefleet.server.api.dependencies import Ctx
from edgefleet.server.api.devices import signed_device_call
from edgefleet.server.api.json_body import StrictJsonRoute
from edgefleet.server.hint_broker import HintRuntime
from edgefleet.server.store.devices import DeviceRow

__all__ = ["router"]

router = APIRouter(tags=["devices"], route_class=StrictJsonRoute)


@router.get("/v1/device/hints")
async def device_hints(request: Request, ctx: Ctx) -> dict[str, Any]:
    runtime: HintRuntime | None = getattr(request.app.state, "hints", None)

    def answer(_session: Session, device: DeviceRow, _body: bytes) -> dict[str, Any]:
        if runtime is None:
            raise NotFoundError(
                "this server sends no wake-up hints (no MQTT broker configured): poll on the interval",
                code="hints_not_configured",
            )
        return runtime.device_config(device.id)

    result: dict[str, Any] = await signed_device_call(request, ctx, max_body_bytes=0, then=answer)
    return result
