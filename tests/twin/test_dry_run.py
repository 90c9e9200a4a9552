"""``edgefleet rollout create ... --dry-run``: the server runs the rollout on its twin of the fleet it knows,
through the real API and CLI; nothing starts, and a request ``create`` refuses is refused the same way."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, update
from tests.rollouts.live_fleet import CLASS, LiveFleet, make_fleet

from edgefleet.cli.exit_codes import ExitCode
from edgefleet.cli.main import cli
from edgefleet.server.store.devices import DeviceRow
from edgefleet.sim.link import enroll_in_memory


def _run(url: str, token: str, *args: str) -> Any:
    return CliRunner().invoke(cli, ["--server", url, "--token", token, *args], catch_exceptions=False)


@pytest.fixture
def live_server(live_server_factory: Any, tmp_path: Path) -> Any:
    return live_server_factory(database_url=f"sqlite:///{tmp_path / 'edgefleet.db'}")


@pytest.fixture
def world(live_server: Any) -> Iterator[LiveFleet]:
    fleet = make_fleet(live_server.url, live_server.admin_token)
    token = fleet.client.create_enrollment_token(CLASS, labels={"site": "site-9"}).token
    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        silent, _key = enroll_in_memory(http, token)
    engine = create_engine(live_server.settings.database_url)
    with engine.begin() as db:  # last heard of an hour ago: offline (the other four polled just now)
        db.execute(
            update(DeviceRow)
            .where(DeviceRow.id == silent)
            .values(last_seen_at=datetime.now(timezone.utc) - timedelta(hours=1))
        )
    engine.dispose()
    yield fleet
    for device in fleet.fleet.devices:
        device.link.close()  # type: ignore[attr-defined]
    fleet.client.close()


def test_dry_run_plans_on_the_known_fleet_and_starts_nothing(
    live_server: Any, world: LiveFleet, tmp_path: Path
) -> None:
    url, token = live_server.url, live_server.admin_token
    result = _run(
        url, token, "rollout", "create", "--model", "digits", "--target", f"{CLASS}={world.v2}",
        "--stages", "1,100%", "--soak", "5m", "--deadline", "1h", "--dry-run", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["dry_run"] is True
    assert plan["devices"] == 5
    (run,) = plan["runs"]
    assert run["outcome"] == "completed"
    assert run["stages"][0]["members"] == 1
    last = next(d for d in run["deadlines"] if d["stage"] == 1)
    assert last["why"]["offline"] == 1  # the device the control plane has never seen
    assert run["not_converged"]["devices"] == 1
    assert any("poll interval" in n for n in plan["notes"])
    assert any("update window" in n for n in plan["notes"])
    assert world.client.list_rollouts().total == 0  # a dry run starts nothing
    page = tmp_path / "plan.html"
    text = _run(
        url, token, "rollout", "create", "--model", "digits", "--target", f"{CLASS}={world.v2}",
        "--dry-run", "--html", str(page),
    )  # fmt: skip
    assert text.exit_code == 0, text.output
    assert "COMPLETED" in text.stdout
    assert "assumptions:" in text.stdout
    assert "<svg" in page.read_text()


def test_dry_run_refuses_what_create_refuses_with_the_same_error(live_server: Any, world: LiveFleet) -> None:
    url, token = live_server.url, live_server.admin_token
    headers = {"Authorization": f"Bearer {token}"}
    body = {"model": "digits", "targets": {CLASS: world.v2}, "spec": {"stages": [{"percent": 0}]}}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        real = http.post("/v1/rollouts", json=body)
        dry = http.post("/v1/rollouts/dry-run", json=body)
        wrong = {**body, "spec": {}, "targets": {"factory-gateway-gpu": world.v2}}
        real_wrong = http.post("/v1/rollouts", json=wrong)
        dry_wrong = http.post("/v1/rollouts/dry-run", json=wrong)
    assert real.status_code == dry.status_code == 422
    assert real.json()["code"] == dry.json()["code"] == "invalid_document"
    assert real.json()["details"]["errors"] == dry.json()["details"]["errors"]
    assert real_wrong.json()["code"] == dry_wrong.json()["code"] == "wrong_hardware_class"
    bad_gate = _run(
        url, token, "rollout", "create", "--model", "digits", "--target", f"{CLASS}={world.v2}",
        "--gate", "max_error_rate=7", "--dry-run",
    )  # fmt: skip
    assert bad_gate.exit_code == ExitCode.INVALID_INPUT
    assert "invalid_document" in bad_gate.stderr
    viewer = world.client.create_token("viewer-1", "viewer").token
    refused = _run(url, viewer, "rollout", "create", "--model", "digits", "--target", f"{CLASS}={world.v2}",
                   "--dry-run")  # fmt: skip
    assert refused.exit_code == ExitCode.AUTH
