"""Entry points for the CLI: run the server, and create an operator token straight in the database."""

from __future__ import annotations

import logging

from edgefleet.server.app import create_app, utc_now
from edgefleet.server.services.tokens import create_token
from edgefleet.server.settings import Settings
from edgefleet.server.store import Database, make_engine
from edgefleet.server.store.migrate import upgrade_to_head

__all__ = ["BOOTSTRAP_CLI_ACTOR", "create_operator_token", "serve"]

BOOTSTRAP_CLI_ACTOR = "cli-bootstrap"
log = logging.getLogger("edgefleet.server")


def serve(settings: Settings) -> None:
    """Validate, migrate and serve with uvicorn until interrupted (blocks)."""
    import uvicorn

    settings = settings.with_dev_admin_token().validate()
    app = create_app(settings)
    if settings.dev:
        log.warning("dev mode: admin token in %s", settings.data_dir / "admin-token")
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        proxy_headers=False,
        server_header=False,
    )


def create_operator_token(settings: Settings, name: str, role: str) -> str:
    """Bootstrap: create a token directly in the database (no server needed); returns the secret once.

    Audited with actor ``cli-bootstrap``. Needs database access, which is the operator's proof of authority.
    """
    db = Database(
        make_engine(settings.resolved_database_url, sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms)
    )
    try:
        upgrade_to_head(db.engine)
        with db.session() as session:
            return create_token(
                session, name=name, role=role, actor=BOOTSTRAP_CLI_ACTOR, now=utc_now()
            ).secret
    finally:
        db.dispose()
