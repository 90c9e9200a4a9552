"""Dashboard fixtures: the simulated fleet (real ASGI app, real signed device channel) on SQLite, and
helpers to sign in and post forms the way a browser does."""

from __future__ import annotations

import os
import re
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def database_url(tmp_path) -> str:
    """SQLite only: the dashboard reads through services already tested on both databases."""
    return f"sqlite:///{tmp_path / 'edgefleet.db'}"


def csrf_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def make_token(sim, role: str, name: str | None = None) -> str:
    r = sim.client.post("/v1/tokens", json={"name": name or role, "role": role}, headers=sim.admin)
    assert r.status_code == 201, r.text
    return r.json()["token"]


def sign_in(client: TestClient, token: str) -> None:
    page = client.get("/dashboard/login")
    assert page.status_code == 200
    r = client.post(
        "/dashboard/login",
        data={"csrf": csrf_of(page.text), "token": token, "next": "/dashboard/"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    client.cookies.delete("ef_login", path="/dashboard/login")


def browser(sim, *, https: bool = False) -> TestClient:
    """A second client on ``sim``'s app with its own cookie jar."""
    return TestClient(sim.app, base_url="https://testserver" if https else "http://testserver")


@pytest.fixture
def world(fleet):  # noqa: F811 - the fixture imported below
    """Six devices on v1 with telemetry, v2 registered, five minutes later."""
    v1 = fleet.artifact("1.0.0")
    v2 = fleet.artifact("2.0.0")
    r = fleet.client.put(
        "/v1/pins/class/medical-cart-cpu/default", json={"artifact_id": v1}, headers=fleet.admin
    )
    assert r.status_code == 204
    devices = [fleet.enroll(fleet.token(labels={"site": f"site-{i % 2}"})) for i in range(6)]
    for identity, ddir in devices:
        assert fleet.poll(identity, ddir) == {"default": v1}
        fleet.report(identity, ddir, active=v1)
        fleet.serve(identity, ddir, v1, requests=50, latency_ms=10)
    fleet.clock.now += timedelta(minutes=5)
    return fleet, v1, v2, devices


from tests.server.fleet import fleet, fleet_settings  # noqa: E402, F401  # the simulated-fleet fixture


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the browser tests put their screenshots: ``$EDGEFLEET_TEST_ARTIFACTS/dashboard`` (emptied at
    the start of the session, so nothing stale passes for new), or a pytest temp folder."""
    root = os.environ.get("EDGEFLEET_TEST_ARTIFACTS")
    folder = Path(root) / "dashboard" if root else tmp_path_factory.mktemp("dashboard-screenshots")
    if root:
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\ndashboard screenshots: {folder}")
    return folder


@pytest.fixture
def chromium():
    from playwright.sync_api import sync_playwright

    from .browser import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
