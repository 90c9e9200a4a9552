"""Shared fixtures: a fresh PostgreSQL database per run, a ``database_url`` for both backends, and a
real control-plane server on loopback (``live_server``).

PostgreSQL: the server at ``EDGEFLEET_TEST_PG_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``)
gets a database ``edgefleet_test_<random>`` for this run, dropped at the end. If the server is unreachable
the postgres params are SKIPPED, unless ``EDGEFLEET_REQUIRE_PG=1`` (CI), which makes them FAIL.

``live_server`` yields a ``LiveServer`` with ``.url`` (``http://127.0.0.1:<port>``), ``.admin_token`` (the
bootstrap admin token, actor ``bootstrap-admin``), ``.settings`` and ``.data_dir``; the app runs in uvicorn in
a background thread on a free port, on a fresh SQLite database under ``tmp_path``. For other settings use
``live_server_factory(**settings_overrides)`` (e.g. ``database_url=database_url``, ``max_blob_bytes=...``).
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
_SERVER_START_TIMEOUT_S = 30.0


def _pg_admin_url() -> str:
    return os.environ.get("EDGEFLEET_TEST_PG_URL", DEFAULT_PG_URL)


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


def _unavailable(reason: str) -> None:
    if os.environ.get("EDGEFLEET_REQUIRE_PG") == "1":
        pytest.fail(
            f"PostgreSQL is required (EDGEFLEET_REQUIRE_PG=1) but unavailable: {reason}", pytrace=False
        )
    pytest.skip(f"PostgreSQL unavailable: {reason}")


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A SQLAlchemy URL (``postgresql+psycopg://``) of a database created for this test run."""
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - the dev extra installs it
        _unavailable(f"psycopg not installed: {exc}")
    admin_url = _pg_admin_url()
    try:
        admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        _unavailable(f"{admin_url}: {exc}")
    name = f"edgefleet_test_{secrets.token_hex(6)}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield _with_database(admin_url, name).replace("postgresql://", "postgresql+psycopg://", 1)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _reset_postgres(url: str) -> None:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1), autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An EMPTY database for this test: a SQLite file, or the run's PostgreSQL database, fresh schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'edgefleet.db'}"
    url: str = request.getfixturevalue("postgres_database")
    _reset_postgres(url)
    return url


@dataclass(frozen=True)
class LiveServer:
    """A running control plane on loopback."""

    url: str
    admin_token: str
    settings: Any  # edgefleet.server.Settings
    data_dir: Path

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}


@contextmanager
def run_live_server(data_dir: Path, **overrides: Any) -> Iterator[LiveServer]:
    """Serve ``create_app(settings)`` with uvicorn in a thread; stops and joins it on exit."""
    import uvicorn

    from edgefleet.server import Settings, create_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    fields: dict[str, Any] = {
        "data_dir": data_dir,
        "host": "127.0.0.1",
        "port": port,
        "admin_token": secrets.token_urlsafe(32),
        "dev": True,  # dev: missing server keys (director key) are generated under data_dir
    }
    fields.update(overrides)
    settings = Settings(**fields)
    app = create_app(settings)
    settings = app.state.context.settings
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False))
    errors: list[BaseException] = []

    def target() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # surfaced to the test below
            errors.append(exc)

    thread = threading.Thread(target=target, name=f"live-server-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + _SERVER_START_TIMEOUT_S
    while not server.started:
        if errors or not thread.is_alive():
            sock.close()
            raise RuntimeError(f"live server failed to start: {errors!r}")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("live server did not start in time")
        time.sleep(0.01)
    try:
        yield LiveServer(
            url=f"http://127.0.0.1:{port}",
            admin_token=settings.admin_token,
            settings=settings,
            data_dir=data_dir,
        )
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
        app.state.context.db.dispose()


@pytest.fixture
def live_server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., LiveServer]]:
    """Start as many servers as needed with ``Settings`` overrides; all are stopped after the test."""
    with ExitStack() as stack:

        def start(**overrides: Any) -> LiveServer:
            data_dir = overrides.pop("data_dir", None) or tmp_path_factory.mktemp("live-server")
            return stack.enter_context(run_live_server(Path(data_dir), **overrides))

        yield start


@pytest.fixture
def live_server(live_server_factory: Callable[..., LiveServer]) -> LiveServer:
    """A real server on a free loopback port: fresh SQLite, dev settings (server keys generated),
    an explicit admin token."""
    return live_server_factory()
