"""A simulated fleet of real enrolled devices against the real ASGI app, with an injectable clock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from edgefleet.agent.channel import DeviceChannel
from edgefleet.agent.datadir import DataDir
from edgefleet.agent.enroll import enroll
from edgefleet.client import EdgefleetClient
from edgefleet.protocol import parse_classes_toml
from edgefleet.server.app import create_app
from edgefleet.server.settings import Settings
from edgefleet.sim.artifacts import register_stand_in_artifact

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "hardware-classes.toml"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def fleet_settings() -> dict:
    """Settings overrides for ``fleet`` (a test module overrides this fixture)."""
    return {}


@pytest.fixture
def fleet(tmp_path, database_url, fleet_settings):
    clock = Clock()
    settings = Settings(
        data_dir=tmp_path / "server",
        dev=True,
        database_url=database_url,
        rollout_tick_s=3600,
        **fleet_settings,
    )
    app = create_app(settings, clock=clock)  # tests drive the rollout engine by hand: ``fleet.tick()``
    with TestClient(app) as client:
        admin = {"authorization": f"Bearer {app.state.context.settings.admin_token}"}
        classes = [c.to_dict() for c in parse_classes_toml(EXAMPLES.read_text())]
        assert client.post("/v1/classes/apply", json={"classes": classes}, headers=admin).status_code == 200
        yield Fleet(app, client, admin, clock, tmp_path)


class Fleet:
    def __init__(self, app, client, admin, clock, tmp_path):
        self.app, self.client, self.admin, self.clock, self.tmp = app, client, admin, clock, tmp_path
        self.count = 0

    def token(self, **body) -> str:
        body.setdefault("hardware_class", "medical-cart-cpu")
        r = self.client.post("/v1/enrollment-tokens", json=body, headers=self.admin)
        assert r.status_code == 201, r.text
        return r.json()["token"]

    def enroll(self, token: str | None = None, **kw):
        self.count += 1
        ddir = self.tmp / f"agent{self.count}"
        identity = enroll(
            server_url="http://testserver",
            token=token or self.token(),
            data_dir=ddir,
            transport=self.client._transport,
            **kw,
        )
        return identity, DataDir(ddir)

    def channel(self, identity, ddir: DataDir) -> DeviceChannel:
        return DeviceChannel(
            "http://testserver",
            device_id=identity.device_id,
            key=ddir.read_key(),
            transport=self.client._transport,
            clock=lambda: self.clock().timestamp(),
        )

    def artifact(self, version: str = "1.0.0", hardware_class: str = "medical-cart-cpu") -> str:
        """A registered stand-in artifact of model ``digits`` (simulated devices never load it)."""
        token = self.admin["authorization"].split()[1]
        client = EdgefleetClient(str(self.client.base_url), token, transport=self.client._transport)
        return register_stand_in_artifact(
            client, model="digits", version=version, hardware_class=hardware_class
        )

    # --- a device's side of a rollout, simulated over the real signed channel ---------------------------

    def assert_documents_current(self) -> None:
        """The targeted-epoch invariant: every stored document the director would answer again without
        recomputing it (``stored_document_current``) has the content a recomputation gives now. Checked
        before every poll and after every engine tick, so each transition's scope is proven in each test."""
        from sqlalchemy import select

        from edgefleet.server.services.desired_state import desired_content
        from edgefleet.server.services.director_epoch import current_epochs, stored_document_current
        from edgefleet.server.store.devices import DeviceRow

        if self.app is None:  # a fleet driving a live server over HTTP: its database is another process's
            return
        with self.app.state.context.db.session() as session, session.begin():
            _epoch, full = current_epochs(session)
            for device in session.execute(
                select(DeviceRow).where(DeviceRow.desired_generation > 0)
            ).scalars():
                if device.revoked_at is not None or not stored_document_current(
                    desired_epoch=device.desired_epoch, director_mark=device.director_mark, full_epoch=full
                ):
                    continue
                choice = desired_content(session, device)
                fresh = choice.digest(choice.assignments(self.app.state.tuf.signed_target))
                assert device.desired_digest == fresh, f"{device.id}: its stored document is stale"

    def poll(self, identity, ddir: DataDir) -> dict:
        """The device's current desired slots: slot -> artifact id."""
        self.assert_documents_current()
        envelope = self.channel(identity, ddir).request("GET", "/v1/device/desired-state").json()
        return {slot: a["artifact_id"] for slot, a in envelope["signed"]["slots"].items()}

    def report(
        self,
        identity,
        ddir: DataDir,
        *,
        active: str | None,
        failed: str | None = None,
        shadow: str | None = None,
        previous: str | None = None,
    ) -> None:
        self.reports = getattr(self, "reports", 0) + 1
        slot = {
            "active": active,
            "previous": previous,
            "state": "idle",
            "failed_artifact": failed,
            "failure_code": "health_check_failed" if failed else None,
        }
        body = {
            "sequence": self.reports,
            "boot_id": "boot-" + identity.device_id,
            "reported_at": self.clock().isoformat(),
            "slots": {
                "default": slot,
                **({"default.shadow": {"active": shadow, "state": "idle"}} if shadow else {}),
            },
        }
        self.channel(identity, ddir).request("POST", "/v1/device/report", json_body=body)

    def serve(
        self,
        identity,
        ddir: DataDir,
        artifact_id: str,
        *,
        requests: int,
        latency_ms: float,
        errors: int = 0,
        shadow_compared: int = 0,
        shadow_agreement: float = 1.0,
    ) -> None:
        """One telemetry window of ``requests`` answered by ``artifact_id`` at ``latency_ms`` (named in
        telemetry as devices do: ``<model>/<version>``)."""
        manifest = self.client.get(f"/v1/artifacts/{artifact_id}", headers=self.admin).json()["manifest"]
        model_version = f"{manifest['model']}/{manifest['version']}"
        from edgefleet.protocol.telemetry import LatencyHistogram

        self.sequence = getattr(self, "sequence", 0) + 1
        hist = LatencyHistogram()
        for _ in range(requests):
            hist.add(latency_ms)
        now = self.clock()
        batch = {
            "device_id": identity.device_id,
            "sent_at": now.isoformat(),
            "records": [
                {
                    "boot_id": "boot1",
                    "sequence": self.sequence,
                    "kind": "window",
                    "window": {
                        "start_at": (now - timedelta(seconds=60)).isoformat(),
                        "end_at": now.isoformat(),
                        "models": [
                            {
                                "model_version": model_version,
                                "requests": requests,
                                "errors_by_code": {"inference_failed": errors} if errors else {},
                                "latency": hist.model_dump(mode="json"),
                                "shadow": {
                                    "compared": shadow_compared,
                                    "agreement_sum": shadow_agreement * shadow_compared,
                                },
                            }
                        ],
                    },
                }
            ],
        }
        self.channel(identity, ddir).request("POST", "/v1/device/telemetry", json_body=batch)

    def tick(self):
        from edgefleet.server.services.rollouts import engine

        # what the server's own loop does before each tick (``app.drive_rollouts``)
        self.app.state.devices.seen.flush(self.app.state.context.db)
        with self.app.state.context.db.session() as session:
            results = engine.tick(session, now=self.clock(), thresholds=self.app.state.devices.thresholds)
        self.assert_documents_current()
        return results
