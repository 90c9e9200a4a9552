"""The confirmation step every dashboard action goes through, and the redirect once it is done.

An action's first post (from its button or form) answers with a confirmation page; the page posts the same
fields back with ``confirm=yes`` and only that post acts. Both posts pass the same origin, CSRF and role
checks (``auth.operator_form``), so asking is never doing and a forged confirmation is refused like any post.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from fastapi import Request, Response
from fastapi.responses import RedirectResponse

from edgefleet.server.dashboard.auth import DashboardUser
from edgefleet.server.dashboard.render import SECURITY_HEADERS, html

__all__ = [
    "MAX_REASON_CHARS",
    "Confirmation",
    "confirmed",
    "done",
    "editing",
    "reason_of",
    "show_confirmation",
]

MAX_REASON_CHARS = 2000


@dataclass(frozen=True)
class Confirmation:
    title: str
    explanation: str
    confirm_label: str
    cancel: str
    danger: bool = False
    ask_reason: bool = True
    """Whether the page asks for a reason (only where the use case writes it to the audit log)."""
    summary: Sequence[tuple[str, str]] = ()
    """What exactly will be done, as label/value rows."""
    carry: Mapping[str, str] = field(default_factory=dict)
    """The action's own fields, posted back unchanged with the confirmation."""
    editable: bool = False
    """Offer "Edit": the carried fields go back to the action's form, filled in (see :func:`editing`)."""


def confirmed(form: Mapping[str, str]) -> bool:
    return form.get("confirm") == "yes"


def editing(form: Mapping[str, str]) -> bool:
    """The confirmation page's "Edit" button: show the form again with these fields; do nothing."""
    return form.get("edit") == "yes"


def reason_of(form: Mapping[str, str]) -> str:
    return form.get("reason", "")[:MAX_REASON_CHARS]


def show_confirmation(
    request: Request, user: DashboardUser, form: Mapping[str, str], c: Confirmation
) -> Response:
    return html(
        request,
        "confirm.html",
        user=user,
        action=request.url.path,
        reason=reason_of(form),
        c=c,
    )


def done(url: str, action: str) -> Response:
    return RedirectResponse(f"{url}?done={action}", status_code=303, headers=SECURITY_HEADERS)
