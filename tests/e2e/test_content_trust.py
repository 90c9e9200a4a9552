"""Content trust end to end: publish with the offline release key through the server, enroll a device that
pins the TUF root, and fetch an assignment only when it matches what the release key signed."""

from __future__ import annotations

import copy
import hashlib
from datetime import datetime, timezone

import httpx
import pytest
from tests.e2e.fleet_cli import EXAMPLES, cli, enroll_agent, push_artifact

from edgefleet.agent.datadir import DataDir
from edgefleet.agent.install.content import TufArtifactFetcher
from edgefleet.protocol.wire.desired_state import Assignment, TargetHashes, TargetRef
from edgefleet.trust.director import verify_desired_state
from edgefleet.trust.errors import TrustError

pytestmark = pytest.mark.slow


class RecordingSink:
    def __init__(self) -> None:
        self.events = []

    def record(self, event) -> None:
        self.events.append(event)


@pytest.fixture
def published(live_server, tmp_path):
    cli(live_server, "class", "apply", str(EXAMPLES))
    release_key = live_server.data_dir / "keys" / "release.key"
    art = push_artifact(live_server, tmp_path, "1.0.0")  # signed with the release key, uploaded
    with httpx.Client(base_url=live_server.url, headers=live_server.admin_headers) as http:
        assert http.get("/v1/tuf").json()["targets_version"] == 1  # push_artifact signed and uploaded it
    data_dir = tmp_path / "agent"
    device_id = enroll_agent(live_server, data_dir)
    return live_server, art, DataDir(data_dir), device_id, release_key


def _assignment(server, device_id: str, ddir: DataDir) -> Assignment:
    with httpx.Client(base_url=server.url, headers=server.admin_headers) as http:
        envelope = http.get(f"/v1/devices/{device_id}/desired-state").json()
    identity = ddir.read_identity()
    state = verify_desired_state(
        envelope,
        director_key=identity.director_key,
        device_id=device_id,
        last_generation=0,
        now=datetime.now(timezone.utc),
        time_floor=None,
    )
    return state.slots["default"]


def _fetcher(ddir: DataDir, sink=None) -> tuple[TufArtifactFetcher, httpx.Client]:
    client = httpx.Client()
    identity = ddir.read_identity()
    return (
        TufArtifactFetcher(
            ddir, identity, client=client, now=lambda: datetime.now(timezone.utc), events=sink
        ),
        client,
    )


def test_a_published_assignment_is_verified_and_downloaded(published, tmp_path):
    server, art, ddir, device_id, _ = published
    assert ddir.tuf_root_path.exists(), "enrollment pins the TUF root"
    cli(server, "device", "pin", art, "--class", "medical-cart-cpu")
    assignment = _assignment(server, device_id, ddir)
    raw = (tmp_path / "art-1.0.0-medical-cart-cpu" / "manifest.json").read_bytes()
    assert assignment.manifest.path == "digits/1.0.0/medical-cart-cpu/manifest.json"
    assert (assignment.manifest.sha256, assignment.manifest.length) == (
        hashlib.sha256(raw).hexdigest(),
        len(raw),
    )
    fetcher, client = _fetcher(ddir)
    with client:
        resolved = fetcher.resolve(assignment)  # the manifest comes from TUF alone
        files = fetcher.fetch(resolved, tmp_path / "staging")
    assert resolved.manifest.version == "1.0.0"
    assert set(files) == {"model.onnx", "golden.npz"}
    assert files["model.onnx"] == tmp_path / "staging" / "model.onnx"
    assert (
        files["model.onnx"].read_bytes()
        == (tmp_path / "art-1.0.0-medical-cart-cpu" / "model.onnx").read_bytes()
    )


def test_an_unpublished_artifact_is_refused(published, tmp_path):
    server, _art, ddir, device_id, _ = published
    unsigned = push_artifact(server, tmp_path, "2.0.0", publish=False)  # registered, never signed
    cli(server, "device", "pin", unsigned, "--device", device_id)
    assignment = _assignment(server, device_id, ddir)
    sink = RecordingSink()
    fetcher, client = _fetcher(ddir, sink)
    with client, pytest.raises(TrustError) as info:
        fetcher.resolve(assignment)
    assert info.value.code == "target_not_in_tuf"
    assert [e.code for e in sink.events] == ["target_not_in_tuf"]
    staging = tmp_path / "staging"
    assert not staging.exists() or not any(staging.iterdir()), "nothing staged"


def test_a_compromised_director_cannot_swap_the_manifest_or_the_class(published, tmp_path):
    server, art, ddir, device_id, release_key = published
    cli(server, "device", "pin", art, "--class", "medical-cart-cpu")
    good = _assignment(server, device_id, ddir)
    fetcher, client = _fetcher(ddir, RecordingSink())
    # The director names other manifest bytes (e.g. one with a looser health-check tolerance) under the
    # signed path: the device compares the name with its verified TUF metadata and refuses.
    lying = copy.deepcopy(good)
    lying.manifest.hashes.sha256 = hashlib.sha256(b"a manifest the release key never signed").hexdigest()
    with client, pytest.raises(TrustError) as info:
        fetcher.resolve(lying)
    assert info.value.code == "hash_mismatch"
    # A target signed for another hardware class.
    other = push_artifact(server, tmp_path, "1.0.0", hardware_class="intel-lowpower-detector")
    cli(
        server,
        "publish",
        str(tmp_path / "art-1.0.0-intel-lowpower-detector"),
        "--release-key",
        str(release_key),
    )
    raw = (tmp_path / "art-1.0.0-intel-lowpower-detector" / "manifest.json").read_bytes()
    foreign = Assignment(
        artifact_id=other,
        manifest=TargetRef(
            path="digits/1.0.0/intel-lowpower-detector/manifest.json",
            length=len(raw),
            hashes=TargetHashes(sha256=hashlib.sha256(raw).hexdigest()),
        ),
    )
    fetcher, client = _fetcher(ddir)
    with client, pytest.raises(TrustError) as info:
        fetcher.resolve(foreign)
    assert info.value.code == "wrong_hardware_class"


def test_static_repository_is_cacheable_and_publishing_needs_an_operator(published):
    server, *_ = published
    with httpx.Client(base_url=server.url) as http:
        ts = http.get("/tuf/metadata/timestamp.json")
        assert ts.status_code == 200
        assert ts.headers["cache-control"] == "public, max-age=60"
        root = http.get("/tuf/metadata/1.root.json")
        assert "immutable" in root.headers["cache-control"]
        assert http.get("/tuf/metadata/../../etc/passwd").status_code == 404
        refused = http.post("/v1/tuf/targets", json={"targets_b64": "", "files": {}})
        assert refused.status_code == 401


def test_publish_refuses_targets_the_server_tampered_with(published, tmp_path):
    """A compromised control plane adds its own entry to the current targets and re-signs them with another
    key: `edgefleet publish` refuses before signing anything, and uploads nothing."""
    from securesystemslib.signer import CryptoSigner
    from tuf.api.metadata import Metadata, TargetFile, Targets

    server, _art, _ddir, _device_id, release_key = published
    current = server.data_dir / "tuf" / "metadata" / "1.targets.json"
    md = Metadata[Targets].from_bytes(current.read_bytes())
    signed_path, signed_info = next(iter(md.signed.targets.items()))
    evil = signed_path.replace("/1.0.0/", "/6.6.6/")
    md.signed.targets[evil] = TargetFile(
        length=signed_info.length, hashes=dict(signed_info.hashes), path=evil,
        unrecognized_fields={"custom": signed_info.custom},
    )  # fmt: skip
    md.signatures.clear()
    md.sign(CryptoSigner.generate_ed25519())
    current.write_bytes(md.to_bytes())
    kept = (release_key.parent / "published-targets.json").read_bytes()

    push_artifact(server, tmp_path, "2.0.0", publish=False)
    refused = cli(
        server, "publish", str(tmp_path / "art-2.0.0-medical-cart-cpu"), "--release-key", str(release_key),
        check=False,
    )  # fmt: skip
    assert refused.returncode == 1, refused.stderr
    assert "targets_not_signed_by_release_key" in refused.stderr
    with httpx.Client(base_url=server.url, headers=server.admin_headers) as http:
        assert http.get("/v1/tuf").json()["targets_version"] == 1, "nothing was uploaded"
    assert (release_key.parent / "published-targets.json").read_bytes() == kept
    assert not (server.data_dir / "tuf" / "metadata" / "2.targets.json").exists()


def test_a_signed_release_floor_refuses_older_assignments(published, tmp_path):
    """The release team raises the floor with the offline key; the device reads it from verified TUF
    targets and refuses the director's assignment of a release below it, with a security event."""
    server, art1, ddir, device_id, release_key = published
    art2 = push_artifact(server, tmp_path, "2.0.0")
    out = cli(
        server, "publish", "--resign", "--release-floor", "digits/medical-cart-cpu=2",
        "--release-key", str(release_key),
    ).stdout  # fmt: skip
    assert "release floor digits/medical-cart-cpu >= 2" in out

    cli(server, "device", "pin", art1, "--device", device_id)
    sink = RecordingSink()
    fetcher, client = _fetcher(ddir, sink)
    with client, pytest.raises(TrustError) as info:
        fetcher.resolve(_assignment(server, device_id, ddir))
    assert info.value.code == "below_release_floor"
    assert [e.code for e in sink.events] == ["below_release_floor"]
    assert not (tmp_path / "staging-1").exists()

    cli(server, "device", "pin", art2, "--device", device_id)
    fetcher, client = _fetcher(ddir, sink)
    with client:
        files = fetcher.fetch(fetcher.resolve(_assignment(server, device_id, ddir)), tmp_path / "staging-2")
    assert (
        files["model.onnx"].read_bytes()
        == (tmp_path / "art-2.0.0-medical-cart-cpu" / "model.onnx").read_bytes()
    )
    assert [e.code for e in sink.events] == ["below_release_floor"]
