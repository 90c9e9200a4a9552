"""``edgefleet server``: run the control plane (needs ``edgefleet[server]``)."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["server"]


@click.command("server")
@click.option(
    "--dev", is_flag=True, default=None, help="Development mode: loopback only, admin token auto-created."
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the database and blobs live (env EDGEFLEET_DATA_DIR).",
)
@click.option("--host", default=None, help="Address to bind (env EDGEFLEET_HOST).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port (env EDGEFLEET_PORT).")
@click.option(
    "--database-url",
    default=None,
    help="sqlite:///PATH or postgresql+psycopg://... (env EDGEFLEET_DATABASE_URL).",
)
def server(
    dev: bool | None, data_dir: Path | None, host: str | None, port: int | None, database_url: str | None
) -> None:
    """Start the control-plane server (applies database migrations first)."""
    from edgefleet.server.main import serve
    from edgefleet.server.settings import Settings

    settings = Settings.from_env(dev=dev, data_dir=data_dir, host=host, port=port, database_url=database_url)
    serve(settings)
