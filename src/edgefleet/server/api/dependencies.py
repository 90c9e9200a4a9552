"""What routes receive: the server context, a database session, the authenticated actor, a page."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from edgefleet.protocol.document import NAME_PATTERN
from edgefleet.server.blobs import BlobStore
from edgefleet.server.services.tokens import Actor, Role, authenticate
from edgefleet.server.settings import Settings
from edgefleet.server.store import Database
from edgefleet.server.store.pages import MAX_PAGE_LIMIT

__all__ = [
    "Admin",
    "Ctx",
    "DbSession",
    "NamePath",
    "Operator",
    "PageParams",
    "PageQuery",
    "ServerContext",
    "Viewer",
    "authorize_request",
    "get_context",
    "get_session",
    "require",
    "required_role",
]


@dataclass(frozen=True)
class ServerContext:
    """Everything a request may touch; built once by ``create_app``."""

    settings: Settings
    db: Database
    blobs: BlobStore
    clock: Callable[[], datetime]


def get_context(request: Request) -> ServerContext:
    ctx: ServerContext = request.app.state.context
    return ctx


Ctx = Annotated[ServerContext, Depends(get_context)]


def get_session(ctx: Ctx) -> Iterator[Session]:
    with ctx.db.session() as session:
        yield session


DbSession = Annotated[Session, Depends(get_session)]
_bearer = HTTPBearer(auto_error=False, description="An operator token (efop_...) or the admin token")


_ROLE_OF: dict[Callable[..., Actor], Role] = {}


def _authorize(ctx: ServerContext, session: Session, presented: str | None, role: Role) -> Actor:
    actor = authenticate(session, presented, bootstrap_token=ctx.settings.admin_token)
    actor.require(role)
    return actor


def require(role: Role) -> Callable[..., Actor]:
    """A dependency that authenticates the bearer token and checks its role."""

    def dependency(
        ctx: Ctx,
        session: DbSession,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Actor:
        return _authorize(ctx, session, credentials.credentials if credentials else None, role)

    dependency.__name__ = f"require_{role.name}"
    _ROLE_OF[dependency] = role
    return dependency


def required_role(call: Callable[..., Any] | None) -> Role | None:
    """The role a dependency made by :func:`require` checks; ``None`` for any other callable."""
    return _ROLE_OF.get(call) if call is not None else None


def authorize_request(request: Request, role: Role) -> Actor:
    """What ``require(role)`` does, outside FastAPI's dependency solving (blocking: run in a thread)."""
    ctx = get_context(request)
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    presented = token.strip() if scheme.lower() == "bearer" else None
    with ctx.db.session() as session:
        return _authorize(ctx, session, presented, role)


Viewer = Annotated[Actor, Depends(require(Role.viewer))]
Operator = Annotated[Actor, Depends(require(Role.operator))]
Admin = Annotated[Actor, Depends(require(Role.admin))]


@dataclass(frozen=True)
class PageParams:
    limit: int
    offset: int


def _page(
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_LIMIT)] = 50,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> PageParams:
    return PageParams(limit=limit, offset=offset)


PageQuery = Annotated[PageParams, Depends(_page)]
NamePath = Annotated[str, Path(pattern=NAME_PATTERN, max_length=63)]
