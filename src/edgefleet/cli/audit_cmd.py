"""``edgefleet audit list``: who changed what, newest first (the ``/v1/audit`` API)."""

from __future__ import annotations

import json

import click

from edgefleet.cli.output import echo_json, format_table
from edgefleet.cli.state import CliState, pass_state

__all__ = ["audit"]

MAX_DETAILS_CHARS = 80


@click.group("audit")
def audit() -> None:
    """The audit log: every change an operator or the control plane made."""


@audit.command("list")
@click.option("--actor", default=None, help="Only this actor (token name).")
@click.option("--action", default=None, help="Only this action, or a family: 'device.*'.")
@click.option("--target", default=None, help="Only this target (a device id, 'class:NAME', a rollout id).")
@click.option("--since", default=None, help="ISO 8601 with a zone, inclusive: 2026-12-01T00:00:00Z.")
@click.option("--until", default=None, help="ISO 8601 with a zone, exclusive.")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0)
@click.option("--json", "as_json", is_flag=True)
@pass_state
def list_cmd(
    state: CliState,
    actor: str | None,
    action: str | None,
    target: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    offset: int,
    as_json: bool,
) -> None:
    """List audit rows, newest first, filtered by actor, action, target and time."""
    with state.client() as client:
        page = client.list_audit(
            actor=actor, action=action, target=target, since=since, until=until, limit=limit, offset=offset
        )
    if as_json:
        echo_json(page)
        return
    rows = [
        {
            **e.model_dump(mode="json"),
            "details_text": json.dumps(e.details, sort_keys=True)[:MAX_DETAILS_CHARS],
        }
        for e in page.items
    ]
    columns = [("AT", "at"), ("ACTOR", "actor"), ("ACTION", "action"), ("TARGET", "target")]
    click.echo(format_table(rows, [*columns, ("DETAILS", "details_text")]))
    if page.total > offset + len(page.items):
        click.echo(f"({len(page.items)} of {page.total}; use --offset {offset + len(page.items)} for more)")
