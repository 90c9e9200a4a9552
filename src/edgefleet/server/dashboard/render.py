"""Rendering: the Jinja environment, HTML responses with security headers, and HTML error pages.

Every dashboard route uses ``DashboardRoute``: an ``EdgefleetError`` becomes an HTML page with the same
status and code the API would answer, and a missing or dead session redirects to the login page.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Coroutine
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from edgefleet.protocol.errors import EdgefleetError

__all__ = [
    "SECURITY_HEADERS",
    "DashboardRoute",
    "LoginRequiredError",
    "environment",
    "html",
]

TEMPLATES_DIR = Path(__file__).parent / "templates"
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}
log = logging.getLogger("edgefleet.server.dashboard")


class LoginRequiredError(Exception):
    """No valid session: the route class answers with a redirect to the login page."""


def _ago(value: str | datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return "never"
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    seconds = ((now or datetime.now(timezone.utc)) - at).total_seconds()
    return f"{_duration(abs(seconds))} {'ago' if seconds >= 0 else 'ahead'}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = float(seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _bytes(value: int | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f} %"


def _json_script(value: Any) -> Markup:
    """JSON safe to embed in ``<script type="application/json">`` (no ``</script>`` breakout)."""
    text = json.dumps(value, separators=(",", ":"), default=str)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)  # noqa: S704 - escaped above for the script-data context


def _short_time(value: str | None) -> str:
    if not value:
        return "-"
    return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S")


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.filters.update(
        ago=_ago,
        duration=_duration,
        num=_num,
        bytes=_bytes,
        pct=_pct,
        json_script=_json_script,
        time=_short_time,
        urlquote=lambda v: quote(str(v), safe=""),
    )
    return env


_ENV = environment()


def html(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render ``template`` with ``context`` plus the request and the signed-in user (if any)."""
    context.setdefault("user", getattr(request.state, "dashboard_user", None))
    context.setdefault("now", datetime.now(timezone.utc))
    body = _ENV.get_template(template).render(request=request, **context)
    return HTMLResponse(body, status_code=status_code, headers=SECURITY_HEADERS)


def _error_page(request: Request, status: int, code: str, message: str, details: dict[str, Any]) -> Response:
    return html(request, "error.html", status, code=code, message=message, details=details)


class DashboardRoute(APIRoute):
    """Turns our errors into HTML pages, and a missing session into a redirect to the login page."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequiredError:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                if request.method != "GET":
                    target = "/dashboard/"
                return RedirectResponse(
                    f"/dashboard/login?next={quote(target, safe='')}",
                    status_code=303,
                    headers=SECURITY_HEADERS,
                )
            except EdgefleetError as exc:
                if exc.http_status >= 500:
                    log.error("dashboard error %s: %s", exc.code, exc)
                return _error_page(request, exc.http_status, exc.code, exc.message, exc.details)
            except RequestValidationError as exc:
                first: dict[str, Any] = next(iter(exc.errors()), {})
                where = ".".join(str(p) for p in first.get("loc", ()))
                status = 404 if where.startswith("path") else 422
                code = "not_found" if status == 404 else "invalid_document"
                return _error_page(request, status, code, f"invalid request: {where}", {})

        return route
