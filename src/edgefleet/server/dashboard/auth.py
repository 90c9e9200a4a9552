"""Signing in to the dashboard: operator token -> sealed session cookie; who is signed in; signing out.

Permissions are the API's: the session re-authenticates its token on every request with
``tokens.authenticate``, and actions call ``Actor.require`` like the API routes do.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import RedirectResponse
from starlette.applications import Starlette

from edgefleet.protocol.errors import AuthenticationError, PermissionDeniedError
from edgefleet.server.api.dependencies import Ctx, DbSession
from edgefleet.server.dashboard.forms import check_csrf, check_origin, read_form
from edgefleet.server.dashboard.render import SECURITY_HEADERS, DashboardRoute, LoginRequiredError, html
from edgefleet.server.dashboard.session import COOKIE_NAME, SessionCodec, cookie_attributes
from edgefleet.server.services.tokens import Actor, Role, authenticate

__all__ = ["DashboardUser", "SignedIn", "codec_for", "operator_form", "router", "safe_next", "signed_in"]

router = APIRouter(prefix="/dashboard", route_class=DashboardRoute, include_in_schema=False)
LOGIN_COOKIE = "ef_login"
_LOGIN_COOKIE_MAX_AGE_S = 1800


@dataclass(frozen=True)
class DashboardUser:
    actor: Actor
    csrf: str

    @property
    def can_act(self) -> bool:
        return self.actor.role >= Role.operator

    @property
    def is_admin(self) -> bool:
        return self.actor.role >= Role.admin

    def require_operator(self) -> None:
        self.actor.require(Role.operator)


async def operator_form(
    request: Request, user: DashboardUser, *, role: Role = Role.operator
) -> dict[str, str]:
    """An action's form: origin and CSRF first (a forged post learns nothing), then the role the API asks
    (operator unless said); nothing is read or changed before all three pass."""
    check_origin(request)
    form = await read_form(request)
    check_csrf(form, user.csrf)
    user.actor.require(role)
    return form


def codec_for(app: Starlette) -> SessionCodec:
    """One codec per app, keyed from the director key (shared by every replica)."""
    codec = getattr(app.state, "dashboard_codec", None)
    if codec is None:
        codec = SessionCodec.from_director_key(app.state.devices.director_key)
        app.state.dashboard_codec = codec
    return codec


def signed_in(request: Request, ctx: Ctx, session: DbSession) -> DashboardUser:
    data = codec_for(request.app).open(request.cookies.get(COOKIE_NAME), now=ctx.clock())
    if data is None:
        raise LoginRequiredError
    try:
        actor = authenticate(session, data.token, bootstrap_token=ctx.settings.admin_token)
    except AuthenticationError:  # revoked since sign-in: the session dies with the token
        raise LoginRequiredError from None
    user = DashboardUser(actor=actor, csrf=data.csrf)
    request.state.dashboard_user = user
    return user


SignedIn = Annotated[DashboardUser, Depends(signed_in)]


def safe_next(value: str | None) -> str:
    """Only a path inside the dashboard: never another host (no open redirect)."""
    if (
        value
        and value.startswith("/dashboard/")
        and not value.startswith("//")
        and "\\" not in value
        and len(value) <= 512
        and not value.startswith("/dashboard/login")
    ):
        return value
    return "/dashboard/"


def _https(request: Request) -> bool:
    return request.url.scheme == "https"


@router.get("/login")
def login_page(request: Request, next: str | None = None) -> Response:
    nonce = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
    response = html(request, "login.html", csrf=nonce, next=safe_next(next), error=None, user=None)
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=_LOGIN_COOKIE_MAX_AGE_S,
        path="/dashboard/login",
        httponly=True,
        samesite="strict",
        secure=_https(request),
    )
    return response


@router.post("/login")
async def login(request: Request, ctx: Ctx, session: DbSession) -> Response:
    check_origin(request)
    form = await read_form(request)
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    presented = form.get("csrf", "")
    if not nonce or not hmac.compare_digest(nonce.encode(), presented.encode()):
        raise PermissionDeniedError(
            "the sign-in form expired; reload the page", code="csrf_failed", expected="a fresh form"
        )
    token = form.get("token", "").strip()
    target = safe_next(form.get("next"))
    try:
        authenticate(session, token, bootstrap_token=ctx.settings.admin_token)
    except AuthenticationError:
        return html(
            request,
            "login.html",
            401,
            csrf=nonce,
            next=target,
            error="That token is not valid (wrong, revoked or mistyped).",
            user=None,
        )
    codec = codec_for(request.app)
    value, _ = codec.seal(token, now=ctx.clock())
    response = RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)
    response.set_cookie(
        COOKIE_NAME,
        value,
        **cookie_attributes(https=_https(request), max_age_s=int(codec.max_age.total_seconds())),  # type: ignore[arg-type]
    )
    response.delete_cookie(LOGIN_COOKIE, path="/dashboard/login")
    return response


@router.post("/logout")
async def logout(request: Request, user: SignedIn) -> Response:
    check_origin(request)
    check_csrf(await read_form(request), user.csrf)
    response = RedirectResponse("/dashboard/login", status_code=303, headers=SECURITY_HEADERS)
    response.delete_cookie(
        COOKIE_NAME, path="/dashboard", httponly=True, samesite="strict", secure=_https(request)
    )
    return response
