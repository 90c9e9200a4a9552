"""``edgefleet token create|list|revoke``: operator API tokens."""

from __future__ import annotations

from pathlib import Path

import click

from edgefleet.cli.output import Column, echo_json, format_table
from edgefleet.cli.state import CliState, pass_state

__all__ = ["token"]

ROLES = ("viewer", "operator", "admin")
_COLUMNS: list[Column] = [("ID", "id"), ("NAME", "name"), ("ROLE", "role"), ("CREATED", "created_at")]


@click.group("token")
def token() -> None:
    """Operator API tokens (roles: viewer, operator, admin)."""


@token.command("create")
@click.option("--name", required=True, help="Who or what will use the token (shown in the audit log).")
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Bootstrap: write straight into the server's database under this data dir.",
)
@click.option("--database-url", default=None, help="Bootstrap: write straight into this database.")
@click.option("--via-api", is_flag=True, help="Create through the API with an admin --token instead.")
@click.option("--json", "as_json", is_flag=True, help="Print id, name, role and token as JSON.")
@pass_state
def create_cmd(
    state: CliState,
    name: str,
    role: str,
    data_dir: Path | None,
    database_url: str | None,
    via_api: bool,
    as_json: bool,
) -> None:
    """Create a token and print its secret (shown once).

    By default this writes directly to the server's database (bootstrap: no token needed, only access to
    the data dir or database). With --via-api it asks the running server, which needs an admin --token.
    """
    if via_api:
        with state.client() as client:
            created = client.create_token(name, role)
        secret, record = created.token or "", created.model_dump(mode="json")
    else:
        from edgefleet.server.main import create_operator_token
        from edgefleet.server.settings import Settings

        settings = Settings.from_env(data_dir=data_dir, database_url=database_url)
        secret = create_operator_token(settings, name, role)
        record = {"name": name, "role": role, "token": secret}
    if as_json:
        echo_json(record)
    else:
        click.echo(secret)
        click.echo(f"created {role} token {name!r}; it is shown only once", err=True)


@token.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the page as JSON.")
@pass_state
def list_cmd(state: CliState, as_json: bool) -> None:
    """List tokens (admin; secrets are never shown)."""
    with state.client() as client:
        page = client.list_tokens(limit=500)
    if as_json:
        echo_json(page)
        return
    click.echo(format_table([t.model_dump(mode="json") for t in page.items], _COLUMNS))


@token.command("revoke")
@click.argument("token_id", metavar="ID")
@pass_state
def revoke_cmd(state: CliState, token_id: str) -> None:
    """Revoke a token at once (admin)."""
    with state.client() as client:
        client.revoke_token(token_id)
    click.echo(f"revoked token {token_id}")
