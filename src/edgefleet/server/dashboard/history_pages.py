"""The dashboard's history page (viewer role): model health over time per class, one series per version.

Render only: the range rule is ``services.health_history.resolve_range`` and the figures are that service's.
A refused range or an unknown name is shown on the page, above the form, with the API's status and code:
never an empty chart.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from edgefleet.protocol.errors import EdgefleetError, InvalidDocumentError
from edgefleet.server.api.dependencies import Ctx, DbSession
from edgefleet.server.dashboard.auth import SignedIn
from edgefleet.server.dashboard.render import DashboardRoute, html
from edgefleet.server.dashboard.svg_chart import Marker, line_chart
from edgefleet.server.services.health_history import health_history, history_classes, resolve_range
from edgefleet.server.services.telemetry import Freshness

__all__ = ["charts_of", "router"]

router = APIRouter(prefix="/dashboard", route_class=DashboardRoute, include_in_schema=False)
Name = Annotated[str | None, Query(max_length=128)]


def _retention_s(request: Request) -> float:
    value = getattr(request.app.state, "telemetry", None)
    return (value if isinstance(value, Freshness) else Freshness()).retention_s


def _when(value: str | None) -> datetime | None:
    """A ``datetime-local`` field (or ISO 8601); unreadable text is the range rule's to refuse."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidDocumentError(
            "a range end is not a date and time", code="history_range_unreadable", got=value[:40]
        ) from exc


def charts_of(history: dict[str, Any]) -> list[dict[str, Any]]:
    """Each metric as an SVG and the rows of its data table."""
    times = [datetime.fromisoformat(t) for t in history["buckets"]]
    markers = [
        Marker(
            at=datetime.fromisoformat(e["at"]),
            label=f"{e['kind']} {e['rollout_id']}",
            kind="m-halt" if e["kind"] in ("halt", "abort") else "m-event",
        )
        for e in history["events"]
    ]
    out = []
    for name, metric in history["metrics"].items():
        series = metric["series"]
        out.append(
            {
                "name": name,
                "title": metric["title"],
                "unit": metric["unit"],
                "svg": line_chart(
                    title=metric["title"],
                    unit=metric["unit"],
                    times=times,
                    series=series,
                    markers=markers,
                    chart_id=f"chart-{name}",
                ),
                "columns": list(series),
                "rows": [
                    (history["buckets"][i], [values[i] for values in series.values()])
                    for i in range(len(times))
                ],
            }
        )
    return out


@router.get("/history")
def history_page(
    request: Request,
    ctx: Ctx,
    session: DbSession,
    user: SignedIn,
    hardware_class: Name = None,
    model_version: Name = None,
    site: Name = None,
    range: Annotated[str | None, Query(max_length=16)] = None,
    start: Annotated[str | None, Query(max_length=40)] = None,
    end: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    now = ctx.clock()
    classes = history_classes(session)
    chosen = hardware_class or (classes[0] if classes else None)
    form = {
        "hardware_class": chosen or "",
        "model_version": model_version or "",
        "site": site or "",
        "range": range or ("custom" if start or end else "day"),
        "start": start or "",
        "end": end or "",
    }
    context: dict[str, Any] = {"form": form, "classes": classes, "user": user, "error": None, "history": None}
    if chosen is None:
        return html(request, "history.html", **context)
    try:
        retention_s = _retention_s(request)
        r = resolve_range(range, _when(start), _when(end), now=now, retention_s=retention_s)
        history = health_history(
            session,
            hardware_class=chosen,
            model_version=model_version or None,
            site=site or None,
            history_range=r,
            retention_s=retention_s,
            now=now,
        )
    except EdgefleetError as exc:
        context["error"] = {"code": exc.code, "message": exc.message, "details": exc.details}
        return html(request, "history.html", exc.http_status, **context)
    context["history"] = history
    context["charts"] = [] if history["empty"] else charts_of(history)
    return html(request, "history.html", **context)
