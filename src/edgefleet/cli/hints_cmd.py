"""``edgefleet hints passwd FILE``: the MQTT broker's password file for wake-up hints (run on the control
plane's host: it reads the server's settings, database and MQTT secret; needs ``edgefleet[server]``)."""

from __future__ import annotations

from pathlib import Path

import click

from edgefleet.protocol.errors import InvalidDocumentError

__all__ = ["hints"]


@click.group("hints")
def hints() -> None:
    """Wake-up hints over MQTT (docs/server.md)."""


@hints.command("passwd")
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The server's data dir (env EDGEFLEET_DATA_DIR).",
)
@click.option("--database-url", default=None, help="The server's database (env EDGEFLEET_DATABASE_URL).")
def passwd_cmd(output: Path, data_dir: Path | None, database_url: str | None) -> None:
    """Write a Mosquitto password file: the control plane's broker user (from EDGEFLEET_MQTT_URL) and one
    user per enrolled, unrevoked device (username = device id, password derived from the MQTT secret).

    Render it again after enrollments and revocations and reload the broker (SIGHUP); pair it with the
    ACL in examples/mosquitto/ so each device reads only its own topic.
    """
    from edgefleet.server.errors import ConfigurationError
    from edgefleet.server.hint_broker import broker_users, parse_broker_url, write_password_file
    from edgefleet.server.settings import Settings
    from edgefleet.server.store import Database, make_engine

    settings = Settings.from_env(data_dir=data_dir, database_url=database_url)
    if settings.mqtt_url is None:
        raise ConfigurationError(
            "no MQTT broker configured",
            expected="EDGEFLEET_MQTT_URL=mqtt://user:password@host:1883",
            got=None,
        )
    parse_broker_url(settings.mqtt_url, strict=True)
    sqlite_file = settings.data_dir / "edgefleet.db"
    if settings.database_url is None and not sqlite_file.is_file():
        # a mistyped --data-dir: no new empty database, no new MQTT secret there, no file locking every
        # device out of the broker
        raise ConfigurationError(
            "no control-plane database in the data dir",
            expected="the server's --data-dir (holding edgefleet.db) or --database-url",
            got=str(settings.data_dir),
        )
    db = Database(make_engine(settings.resolved_database_url))
    try:
        users = broker_users(settings, db)
    finally:
        db.dispose()
    try:
        count = write_password_file(output, users)
    except OSError as exc:
        raise InvalidDocumentError(
            f"cannot write the password file {output}: {exc.strerror or exc}",
            code="file_unwritable",
            expected="a path this user can write",
            got=str(exc.filename or output),
        ) from exc
    click.echo(f"wrote {count} broker user(s) to {output}")
