"""Liveness and what this server runs on."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from edgefleet import __version__
from edgefleet.server.api.dependencies import Ctx
from edgefleet.server.api.json_body import StrictJsonRoute

__all__ = ["router"]

router = APIRouter(tags=["health"], route_class=StrictJsonRoute)


@router.get("/healthz")
def healthz(ctx: Ctx) -> dict[str, Any]:
    return {"status": "ok", "version": __version__, "database": ctx.db.kind}
