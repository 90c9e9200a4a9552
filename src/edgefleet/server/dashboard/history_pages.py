"""The dashboard's pages over time (viewer role): model health per class with one series per version, and a
rollout's story (each gate's observed value against its threshold, stage boundaries, the halt, exposed and
rolled-back devices).

Render only: the range rule is ``services.health_history.resolve_range`` and the figures are that service's.
A refused range or an unknown name is shown on the page, above the form, with the API's status and code:
never an empty chart.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from edgefleet.protocol.errors import EdgefleetError, InvalidDocumentError
from edgefleet.server.api.dependencies import Ctx, DbSession
from edgefleet.server.dashboard.auth import SignedIn
from edgefleet.server.dashboard.render import DashboardRoute, html
from edgefleet.server.dashboard.svg_chart import Marker, line_chart
from edgefleet.server.services.device_timeline import device_timeline
from edgefleet.server.services.health_history import health_history, history_classes, resolve_range
from edgefleet.server.services.rollouts.history import rollout_story
from edgefleet.server.services.telemetry import Freshness

__all__ = ["charts_of", "router"]

router = APIRouter(prefix="/dashboard", route_class=DashboardRoute, include_in_schema=False)
Name = Annotated[str | None, Query(max_length=128)]
RolloutId = Annotated[str, Path(pattern=r"^ro_[0-9a-f]{16}$")]
DeviceId = Annotated[str, Path(pattern=r"^dev_[0-9a-f]{20}$")]
TIMELINE_CHARTS = {
    "requests_by_version": ("Requests by version (versions installed and serving)", "requests"),
    "requests_by_rung": ("Requests by rung", "requests"),
    "cpu_temp_c": ("CPU temperature", "C"),
    "memory_pressure": ("Memory pressure (used / total)", "ratio"),
    "late_s": ("Lateness of windows (buffered while offline)", "s"),
}


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
                    end_at=datetime.fromisoformat(history["range"]["end_at"]),
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


def story_charts(story: dict[str, Any]) -> list[dict[str, Any]]:
    """One chart per (class, gate): observed against its threshold, with stage boundaries and the halt
    marked; then the exposed and rolled-back devices."""
    times = [datetime.fromisoformat(t) for t in story["times"]]
    markers = [
        Marker(
            at=datetime.fromisoformat(e["at"]),
            label=e["kind"] + (f" ({e['gate']})" if e["gate"] else ""),
            kind="m-halt" if e["kind"] in ("halt", "abort") else "m-event",
        )
        for e in story["events"]
        if e["kind"] in ("created", "advance", "promote", "halt", "abort", "complete")
    ]
    charts: list[dict[str, Any]] = []
    for gate in story["gates"]:
        thresholds = [t for t in gate["threshold"] if t is not None]
        series = {"observed": gate["observed"], "threshold": gate["threshold"]}
        title = f"{gate['hardware_class']}: {gate['name']}"
        charts.append(
            {
                "name": f"{gate['hardware_class']}-{gate['name']}",
                "title": title,
                "unit": gate["unit"] or gate["comparison"],
                "svg": line_chart(
                    title=title,
                    unit=gate["unit"] or "",
                    times=times,
                    series={"observed": gate["observed"]},
                    markers=markers,
                    threshold=thresholds[-1] if thresholds else None,
                    chart_id=f"gate-{len(charts)}",
                ),
                "columns": [*series, "verdict"],
                "rows": [
                    (story["times"][i], [gate["observed"][i], gate["threshold"][i], gate["verdict"][i]])
                    for i in range(len(times))
                ],
            }
        )
    devices = {"exposed": story["exposed"], "rolled back": story["rolled_back"]}
    charts.append(
        {
            "name": "devices",
            "title": "Exposed and rolled-back devices",
            "unit": "devices",
            "svg": line_chart(
                title="Exposed and rolled-back devices",
                unit="devices",
                times=times,
                series=devices,
                markers=markers,
                chart_id="devices",
            ),
            "columns": [*devices, "stage"],
            "rows": [
                (story["times"][i], [story["exposed"][i], story["rolled_back"][i], story["stages"][i] + 1])
                for i in range(len(times))
            ],
        }
    )
    return charts


@router.get("/rollouts/{rollout_id}/story")
def rollout_story_page(
    rollout_id: RolloutId, request: Request, session: DbSession, user: SignedIn
) -> Response:
    story = rollout_story(session, rollout_id)
    charts = story_charts(story) if story["times"] else []
    return html(request, "rollout_story.html", story=story, charts=charts, user=user)


@router.get("/devices/{device_id}/timeline")
def device_timeline_page(
    device_id: DeviceId,
    request: Request,
    ctx: Ctx,
    session: DbSession,
    user: SignedIn,
    range_name: Annotated[str | None, Query(alias="range", max_length=16)] = None,
    start: Annotated[str | None, Query(max_length=40)] = None,
    end: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    now = ctx.clock()
    form = {
        "range": range_name or ("custom" if start or end else "day"),
        "start": start or "",
        "end": end or "",
    }
    context: dict[str, Any] = {
        "form": form,
        "device_id": device_id,
        "user": user,
        "error": None,
        "timeline": None,
    }
    try:
        r = resolve_range(range_name, _when(start), _when(end), now=now, retention_s=_retention_s(request))
        timeline = device_timeline(session, device_id, history_range=r)
    except EdgefleetError as exc:
        if exc.http_status == 404:
            raise
        context["error"] = {"code": exc.code, "message": exc.message, "details": exc.details}
        return html(request, "device_timeline.html", exc.http_status, **context)
    times = [datetime.fromisoformat(t) for t in timeline["buckets"]]
    markers = [
        Marker(at=datetime.fromisoformat(e["at"]), label=f"{e['kind']} {e['code']}", kind="m-event")
        for e in timeline["install_steps"]
    ]
    charts = []
    for name, (title, unit) in TIMELINE_CHARTS.items():
        series = timeline["series"][name]
        if not series:
            continue
        charts.append(
            {
                "name": name,
                "title": title,
                "unit": unit,
                "svg": line_chart(
                    title=title,
                    unit=unit,
                    times=times,
                    series=series,
                    markers=markers,
                    chart_id=f"tl-{name}",
                    end_at=datetime.fromisoformat(timeline["range"]["end_at"]),
                ),
                "columns": list(series),
                "rows": [
                    (timeline["buckets"][i], [v[i] for v in series.values()]) for i in range(len(times))
                ],
            }
        )
    context.update(timeline=timeline, charts=[] if timeline["empty"] else charts)
    return html(request, "device_timeline.html", **context)
