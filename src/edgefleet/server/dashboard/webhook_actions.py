"""Adding and removing alert webhooks from the dashboard (admins, as ``/v1/webhooks`` asks).

The form is ``POST /v1/webhooks``: its fields are validated with the API's body model
(``request_bodies.WebhookCreate``) and the service's own checks (``webhooks.check_webhook``: http(s) URL,
known event kinds, secret length) before the confirmation page, and the confirmed post calls the API's use
case (``webhooks.create_webhook``, audited as ``webhook.create``). Removing is ``webhooks.delete_webhook``
(``webhook.delete``).

Secrets: left empty, the server generates one and the answer to the confirmed post shows it once (the page
is ``no-store``; nothing shows it again). One the admin typed is never echoed: the confirmation page carries
it sealed (AES-GCM with the dashboard's key, bound to the session's CSRF token), never in clear.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response

from edgefleet.protocol.errors import EdgefleetError, InvalidDocumentError, PermissionDeniedError
from edgefleet.protocol.webhooks import EVENT_KINDS
from edgefleet.server.api.dependencies import Ctx, DbSession
from edgefleet.server.dashboard.alert_pages import alerts_view
from edgefleet.server.dashboard.auth import DashboardUser, SignedIn, codec_for, operator_form
from edgefleet.server.dashboard.confirm import Confirmation, confirmed, done, editing, show_confirmation
from edgefleet.server.dashboard.form_problems import form_problems
from edgefleet.server.dashboard.render import DashboardRoute, html
from edgefleet.server.services.alerts import webhooks
from edgefleet.server.services.request_bodies import WebhookCreate, validate_body
from edgefleet.server.services.tokens import Role

__all__ = ["router"]

router = APIRouter(prefix="/dashboard", route_class=DashboardRoute, include_in_schema=False)
PAGE = "/dashboard/alerts"
EVENT_FIELDS = {f"event-{kind}": kind for kind in EVENT_KINDS}
SEALED = "sealed_secret"
BODY_FIELDS = {"name": "name", "url": "url", "events": "events", "secret": "secret"}
CODE_FIELDS = {
    "invalid_name": "name",
    "webhook_exists": "name",
    "invalid_webhook_url": "url",
    "unknown_alert_event": "events",
    "invalid_webhook_secret": "secret",
}
WebhookId = Annotated[str, Path(pattern=r"^wh_[0-9a-f]{16}$")]


def _fields(form: dict[str, str]) -> dict[str, str]:
    """The form's fields that may be shown again: name, URL and the chosen events (never the secret)."""
    fields = {"name": form.get("name", ""), "url": form.get("url", "")}
    fields.update({name: "on" for name in EVENT_FIELDS if form.get(name)})
    return fields


def _secret(form: dict[str, str], user: DashboardUser, request: Request) -> str | None:
    """The secret the admin typed (in clear on the form, sealed on the confirmation page), or ``None``."""
    typed = form.get("secret", "")
    if typed:
        return typed
    sealed = form.get(SEALED, "")
    if not sealed:
        return None
    opened = codec_for(request.app).open_field(sealed, bound_to=user.csrf)
    if opened is None:
        raise InvalidDocumentError(
            "the sealed webhook secret does not open (another session's form?): type it again",
            code="invalid_webhook_secret",
            expected="the secret as typed on this session's form",
            got="a sealed value this session did not make",
        )
    return opened


def webhook_body(form: dict[str, str], secret: str | None) -> WebhookCreate:
    """The form's fields as the body ``POST /v1/webhooks`` would get, validated as the API does."""
    document: dict[str, Any] = {
        "name": form.get("name", "").strip(),
        "url": form.get("url", "").strip(),
        "events": [kind for name, kind in EVENT_FIELDS.items() if form.get(name)],
        "secret": secret,
    }
    return validate_body(WebhookCreate, document)


@router.post("/webhooks/new")
async def create_webhook(request: Request, ctx: Ctx, session: DbSession, user: SignedIn) -> Response:
    form = await operator_form(request, user, role=Role.admin)
    fields = _fields(form)
    if editing(form):
        return alerts_view(request, session, user, form=fields)
    try:
        secret = _secret(form, user, request)
        body = webhook_body(form, secret)
        events = webhooks.check_webhook(name=body.name, url=body.url, events=body.events, secret=body.secret)
        if not confirmed(form):
            carry = dict(fields)
            if body.secret is not None:
                carry[SEALED] = codec_for(request.app).seal_field(body.secret, bound_to=user.csrf)
            return show_confirmation(
                request,
                user,
                form,
                Confirmation(
                    title=f"Add webhook {body.name}?",
                    explanation="The control plane posts each chosen event to this URL, the body signed "
                    "with the webhook's secret (HMAC-SHA256), retrying with capped backoff. "
                    + (
                        "The secret you typed is kept; it is not shown here or anywhere."
                        if body.secret is not None
                        else "The server generates the secret and shows it once, on the next page."
                    ),
                    confirm_label="Add webhook",
                    cancel=PAGE,
                    ask_reason=False,
                    editable=True,
                    summary=[
                        ("Name", body.name),
                        ("URL", body.url),
                        ("Events", ", ".join(events) or "all"),
                        ("Secret", "typed by you (hidden)" if body.secret is not None else "generated"),
                    ],
                    carry=carry,
                ),
            )
        created = webhooks.create_webhook(
            session,
            name=body.name,
            url=body.url,
            events=body.events,
            secret=body.secret,
            actor=user.actor.name,
            now=ctx.clock(),
        )
    except PermissionDeniedError:
        raise
    except EdgefleetError as exc:
        problems = form_problems(exc, body_fields=BODY_FIELDS, code_fields=CODE_FIELDS)
        return alerts_view(request, session, user, form=fields, problems=problems)
    return html(
        request,
        "webhook_created.html",
        user=user,
        hook=webhooks.webhook_to_wire(created.row),
        secret=created.secret,
    )


@router.post("/webhooks/{webhook_id}/remove")
async def remove_webhook(
    webhook_id: WebhookId, request: Request, ctx: Ctx, session: DbSession, user: SignedIn
) -> Response:
    form = await operator_form(request, user, role=Role.admin)
    if not confirmed(form):
        listed = (webhooks.webhook_to_wire(h) for h in webhooks.list_webhooks(session))
        hook = next((h for h in listed if h["id"] == webhook_id), None)
        return show_confirmation(
            request,
            user,
            form,
            Confirmation(
                title=f"Remove webhook {hook['name'] if hook else webhook_id}?",
                explanation="No event is posted to it any more; its pending deliveries and its delivery log "
                "go with it (the events stay).",
                confirm_label="Remove webhook",
                cancel=PAGE,
                danger=True,
                ask_reason=False,
                summary=[("Id", webhook_id), ("URL", hook["url"] if hook else "(no such webhook)")],
            ),
        )
    webhooks.delete_webhook(session, webhook_id, actor=user.actor.name, now=ctx.clock())
    return done(PAGE, "webhook_remove")
