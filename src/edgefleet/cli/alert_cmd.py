"""``edgefleet alert webhook add|list|remove|test`` and ``edgefleet alert deliveries``: alert webhooks and
their delivery log."""

from __future__ import annotations

from pathlib import Path

import click

from edgefleet.cli.output import Column, echo_json, format_table
from edgefleet.cli.state import CliState, pass_state
from edgefleet.protocol.webhooks import EVENT_KINDS

__all__ = ["alert"]

DELIVERY_STATUSES = ("pending", "delivered", "gave_up")
_HOOK_COLUMNS: list[Column] = [("ID", "id"), ("NAME", "name"), ("URL", "url"), ("EVENTS", "events")]
_DELIVERY_COLUMNS: list[Column] = [
    ("ID", "id"),
    ("EVENT", "event.kind"),
    ("SUBJECT", "event.subject"),
    ("WEBHOOK", "webhook_id"),
    ("STATUS", "status"),
    ("ATTEMPTS", "attempts"),
    ("LAST", "last_status_code"),
    ("ERROR", "last_error"),
    ("UPDATED", "updated_at"),
]


@click.group("alert")
def alert() -> None:
    """Alert webhooks (signed with HMAC-SHA256) and their delivery log."""


@alert.group("webhook")
def webhook() -> None:
    """Where alerts are sent."""


@webhook.command("add")
@click.option("--name", required=True, help="A short name (lowercase, digits, . _ -).")
@click.option("--url", required=True, help="The receiver: an http(s) URL.")
@click.option(
    "--event",
    "events",
    multiple=True,
    type=click.Choice(EVENT_KINDS),
    help="An event kind to send (repeat; default: every kind).",
)
@click.option(
    "--secret-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Read the HMAC secret from this file (16-128 characters); default: the server makes one.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the webhook as JSON.")
@pass_state
def add_cmd(
    state: CliState, name: str, url: str, events: tuple[str, ...], secret_file: Path | None, as_json: bool
) -> None:
    """Create a webhook (admin). A secret made by the server is printed once; keep it for the receiver."""
    secret = secret_file.read_text(encoding="utf-8").strip() if secret_file is not None else None
    with state.client() as client:
        created = client.create_webhook(name, url, events=list(events), secret=secret)
    if as_json:
        echo_json(created)
        return
    click.echo(f"created webhook {created['id']} ({created['name']}) -> {created['url']}")
    if "secret" in created:
        click.echo(f"secret (shown once): {created['secret']}")


@webhook.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the webhooks as JSON.")
@pass_state
def list_cmd(state: CliState, as_json: bool) -> None:
    """List webhooks (secrets are never shown)."""
    with state.client() as client:
        items = client.list_webhooks()
    if as_json:
        echo_json({"items": items, "total": len(items)})
        return
    rows = [{**h, "events": ",".join(h["events"]) or "all"} for h in items]
    click.echo(format_table(rows, _HOOK_COLUMNS))


@webhook.command("remove")
@click.argument("webhook_id", metavar="ID")
@pass_state
def remove_cmd(state: CliState, webhook_id: str) -> None:
    """Delete a webhook and its pending deliveries (admin)."""
    with state.client() as client:
        client.delete_webhook(webhook_id)
    click.echo(f"removed webhook {webhook_id}")


@webhook.command("test")
@click.argument("webhook_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the queued delivery as JSON.")
@pass_state
def test_cmd(state: CliState, webhook_id: str, as_json: bool) -> None:
    """Queue a ``test`` event for one webhook; watch it with ``edgefleet alert deliveries``."""
    with state.client() as client:
        queued = client.test_webhook(webhook_id)
    if as_json:
        echo_json(queued)
        return
    click.echo(f"queued delivery {queued['delivery_id']}")


@alert.command("deliveries")
@click.option("--status", type=click.Choice(DELIVERY_STATUSES), default=None)
@click.option("--webhook", "webhook_id", default=None, help="Only this webhook's deliveries.")
@click.option("--kind", type=click.Choice(EVENT_KINDS), default=None)
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the page as JSON.")
@pass_state
def deliveries_cmd(
    state: CliState, status: str | None, webhook_id: str | None, kind: str | None, limit: int, as_json: bool
) -> None:
    """The delivery log, newest first: pending (with its next try), delivered, or given up."""
    with state.client() as client:
        page = client.list_deliveries(status=status, webhook=webhook_id, kind=kind, limit=limit)
    if as_json:
        echo_json(page)
        return
    click.echo(format_table(page["items"], _DELIVERY_COLUMNS))
