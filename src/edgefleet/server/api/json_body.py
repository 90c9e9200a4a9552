"""JSON request bodies, read strictly and only after the caller is known.

FastAPI parses a JSON body with ``json.loads`` before any dependency runs: ``NaN``, ``1e400`` and lone
surrogates get through (and later break a strict response or a database write), a body that is not UTF-8
becomes a generic 400, and an anonymous caller learns how the server parses before being refused. Every
API route therefore uses :class:`StrictJsonRoute`: the body is parsed by the one strict parser
(``edgefleet.protocol.canonical.loads_strict``); when it is refused and the route needs a bearer role, the
caller is authenticated and authorized first (401/403 before 422 ``malformed_json``).
"""

from __future__ import annotations

import email.message
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.concurrency import run_in_threadpool
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from edgefleet.protocol.canonical import loads_strict
from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.server.api.dependencies import authorize_request, required_role
from edgefleet.server.services.tokens import Role

__all__ = ["StrictJsonRoute", "is_json_content_type", "role_of"]


def is_json_content_type(value: str | None) -> bool:
    """``application/json`` or ``application/*+json`` (what FastAPI parses as JSON)."""
    if not value:
        return False
    message = email.message.Message()
    message["content-type"] = value
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def role_of(dependant: Dependant) -> Role | None:
    """The bearer role the route requires (the highest among its dependencies), or ``None``."""
    found: Role | None = None
    stack = list(dependant.dependencies)
    while stack:
        dep = stack.pop()
        role = required_role(dep.call)
        if role is not None and (found is None or role > found):
            found = role
        stack.extend(dep.dependencies)
    return found


class StrictJsonRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler
        role = role_of(self.dependant)

        async def route(request: Request) -> Response:
            body = await request.body()
            if body and is_json_content_type(request.headers.get("content-type")):
                try:
                    parsed = loads_strict(body, what="request body")
                except InvalidDocumentError:
                    if role is not None:
                        await run_in_threadpool(authorize_request, request, role)
                    raise
                request._json = parsed  # what starlette's Request.json() caches; FastAPI reads it there
            return await handler(request)

        return route
