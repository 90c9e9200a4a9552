"""What routes receive: the server context, a database session, the authenticated actor, a page."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

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
    "get_context",
    "get_session",
    "require",
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


def require(role: Role) -> Callable[..., Actor]:
    """A dependency that authenticates the bearer token and checks its role."""

    def dependency(
        ctx: Ctx,
        session: DbSession,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Actor:
        actor = authenticate(
            session,
            credentials.credentials if credentials else None,
            bootstrap_token=ctx.settings.admin_token,
        )
        actor.require(role)
        return actor

    dependency.__name__ = f"require_{role.name}"
    return dependency


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
