"""Director key rotation end to end: ``edgefleet keys rotate --role director`` writes root N+1 naming the new
key; a restarted server signs with it; an enrolled device follows the root chain over TUF and pins it."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from tests.e2e.fleet_cli import EXAMPLES, cli, enroll_agent, push_artifact

from edgefleet.agent.channel import DeviceChannel
from edgefleet.agent.datadir import DataDir
from edgefleet.agent.install.child_fetcher import ChildFetcher
from edgefleet.agent.install.interface import RecordingInstaller
from edgefleet.agent.sync import SyncCoordinator
from edgefleet.trust.ed25519 import Ed25519VerifyKey

pytestmark = pytest.mark.slow


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def record_event(self, kind: str, code: str, details=None) -> None:
        self.seen.append((kind, code))


def _coordinator(ddir: DataDir, server_url: str, events: Events) -> SyncCoordinator:
    """Wired as ``agent run`` wires it: the rotated keys come from a fetch child's verified TUF root."""
    identity = ddir.read_identity()
    channel = DeviceChannel(server_url, device_id=identity.device_id, key=ddir.read_key())
    fetcher = ChildFetcher(ddir.root, identity, now=lambda: datetime.now(timezone.utc))
    named = lambda: [Ed25519VerifyKey.from_pem(p) for p in fetcher.director_keys_pem()]  # noqa: E731  # as agent.app
    return SyncCoordinator(ddir, channel, RecordingInstaller(), events=events, director_keys=named)


def test_devices_follow_a_director_key_rotation(live_server_factory, tmp_path):
    first = live_server_factory()
    keys = first.data_dir / "keys"
    cli(first, "class", "apply", str(EXAMPLES))
    v1 = push_artifact(first, tmp_path, "1.0.0")
    ddir = DataDir(tmp_path / "agent")
    device_id = enroll_agent(first, ddir.root)
    old_pem = ddir.read_identity().director_public_key_pem
    assert old_pem == (keys / "director.pub").read_text()
    events = Events()
    assert _coordinator(ddir, first.url, events).poll_once().result == "updated"

    # The operator rotates the director key (root keys sign root 2) and restarts the server, same data.
    cli(first, "keys", "rotate", str(keys), "--role", "director", "--repo", str(first.data_dir / "tuf"))
    new_pem = (keys / "director.pub").read_text()
    assert new_pem != old_pem
    second = live_server_factory(data_dir=first.data_dir)
    cli(second, "device", "pin", v1, "--device", device_id)  # a new desired state, signed with the new key

    sync = _coordinator(ddir, second.url, events)
    outcome = sync.poll_once()
    assert (outcome.result, outcome.error_code) == ("updated", None)
    assert sync.state is not None
    assert sync.state.slots["default"].artifact_id == v1
    assert ddir.read_identity().director_public_key_pem == new_pem
    assert ("security", "director_key_rotated") in events.seen

    # The old key is retired on the device: the server that still holds it is no longer believed.
    cli(first, "device", "pin", v1, "--device", device_id, "--slot", "fallback")
    stale = _coordinator(ddir, first.url, events).poll_once()
    assert (stale.result, stale.error_code) == ("rejected", "bad_director_signature")
