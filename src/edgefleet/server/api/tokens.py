"""/v1/tokens: operator API tokens (admin only)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, ConfigDict, Field

from edgefleet.server.api.dependencies import Admin, Ctx, DbSession
from edgefleet.server.api.json_body import StrictJsonRoute
from edgefleet.server.services import tokens as svc

__all__ = ["router"]

router = APIRouter(prefix="/v1/tokens", tags=["tokens"], route_class=StrictJsonRoute)


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(max_length=63, json_schema_extra={"pattern": svc.TOKEN_NAME_PATTERN})
    role: str = Field(max_length=16, json_schema_extra={"enum": [r.name for r in svc.Role]})


@router.post("", status_code=201)
def create_token(body: TokenCreate, ctx: Ctx, session: DbSession, actor: Admin) -> dict[str, Any]:
    created = svc.create_token(session, name=body.name, role=body.role, actor=actor.name, now=ctx.clock())
    return {**svc.token_to_wire(created.row), "token": created.secret}


@router.get("")
def list_tokens(session: DbSession, _: Admin) -> dict[str, Any]:
    rows = svc.list_tokens(session)
    return {"items": [svc.token_to_wire(r) for r in rows], "total": len(rows)}


@router.delete("/{token_id}", status_code=204)
def revoke_token(
    token_id: str = Path(pattern=r"^tok_[0-9a-f]{16}$"), *, ctx: Ctx, session: DbSession, actor: Admin
) -> Response:
    svc.revoke_token(session, token_id, actor=actor.name, now=ctx.clock())
    return Response(status_code=204)
