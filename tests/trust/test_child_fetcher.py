"""The agent's fetcher that runs each TUF operation in a child process (``agent.install.child_fetcher``),
against a real TUF repository on a loopback mirror: same files, same error codes and security events as the
in-process ``TufArtifactFetcher``; a child that crashes, hangs or is stopped is a retryable
``fetch_child_failed`` that leaves nothing in the slot."""

from __future__ import annotations

import copy
import hashlib
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgefleet.agent.datadir import DataDir
from edgefleet.agent.install import InstallerConfig, SlotInstaller, TrialPolicy, child_fetcher
from edgefleet.agent.install.child_fetcher import ChildFetcher, child_timeout_s
from edgefleet.agent.install.content import TufArtifactFetcher
from edgefleet.agent.install.slots import SlotStore
from edgefleet.agent.runtime.ort import OnnxRuntimeAdapter
from edgefleet.protocol.errors import EdgefleetError
from edgefleet.protocol.wire.desired_state import Assignment, DesiredState, TargetHashes, TargetRef
from edgefleet.trust.errors import DownloadFailedError, HashMismatchError
from edgefleet.trust.events import ListSink
from edgefleet.trust.publish import publish_to_repository, read_manifest
from edgefleet.trust.repository import target_storage_name

from .fleet import CLASS, NOW, Fleet, enrolled_device

CRASHING = [sys.executable, "-c", "import sys; sys.stderr.write('boom: the child fell over'); sys.exit(3)"]
HANGING = [sys.executable, "-c", "import time; time.sleep(60)"]


@pytest.fixture
def site(fleet: Fleet, tmp_path: Path):
    art = fleet.artifact(model_bytes=b"signed-model-bytes" * 512)
    publish_to_repository(fleet.repo, art, fleet.release, now=NOW)
    ddir, _identity, mirror = enrolled_device(fleet, tmp_path)
    ddir.write_key(Ed25519PrivateKey.generate())  # enrolled: identity and key
    yield fleet, ddir, art
    mirror.close()


def _assignment(art: Path) -> Assignment:
    raw = (art / "manifest.json").read_bytes()
    return Assignment(
        artifact_id="art-1",
        manifest=TargetRef(
            path=f"digits/1.0.0/{CLASS}/manifest.json",
            length=len(raw),
            hashes=TargetHashes(sha256=hashlib.sha256(raw).hexdigest()),
        ),
    )


def _child(ddir: DataDir, events: ListSink | None = None, **kw: object) -> ChildFetcher:
    return ChildFetcher(ddir.root, ddir.read_identity(), now=lambda: NOW, events=events, **kw)  # type: ignore[arg-type]


def _tamper_model(fleet: Fleet, art: Path) -> None:
    manifest, _ = read_manifest(art)
    entry = next(f for f in manifest.files if f.path == "model.onnx")
    stored = fleet.repo.target_file_path(
        target_storage_name(f"digits/1.0.0/{CLASS}/model.onnx", entry.sha256)
    )
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))


def test_a_signed_artifact_is_resolved_and_fetched_through_the_child(site, tmp_path) -> None:
    _fleet, ddir, art = site
    fetcher = _child(ddir)
    resolved = fetcher.resolve(_assignment(art))
    assert (resolved.artifact_id, resolved.manifest.version) == ("art-1", "1.0.0")
    files = fetcher.fetch(resolved, tmp_path / "staging")
    assert set(files) == {"model.onnx", "golden.npz"}
    for name, path in files.items():
        assert path == tmp_path / "staging" / name
        assert path.read_bytes() == (art / name).read_bytes()
    assert fetcher.last_transfer is not None
    assert (
        fetcher.last_transfer.bytes_downloaded
        == fetcher.last_transfer.full_bytes
        == sum((art / n).stat().st_size for n in files)
    )
    # The verified manifest is cached: resolving it again starts no child (this one could not start).
    again = _child(ddir, command=CRASHING).resolve(_assignment(art))
    assert again.manifest == resolved.manifest


def test_the_director_keys_come_from_the_verified_root(site) -> None:
    fleet, ddir, _art = site
    assert _child(ddir).director_keys_pem() == [(fleet.keys / "director.pub").read_text()]


def test_a_tampered_target_fails_with_the_same_code_and_events_as_in_process(site, tmp_path) -> None:
    fleet, ddir, art = site
    _tamper_model(fleet, art)
    in_process_events = ListSink()
    with httpx.Client() as http:
        in_process = TufArtifactFetcher(
            ddir, ddir.read_identity(), client=http, now=lambda: NOW, events=in_process_events
        )
        with pytest.raises(HashMismatchError) as expected:
            in_process.fetch(in_process.resolve(_assignment(art)), tmp_path / "staging-1")
    child_events = ListSink()
    fetcher = _child(ddir, child_events)
    with pytest.raises(HashMismatchError) as got:
        fetcher.fetch(fetcher.resolve(_assignment(art)), tmp_path / "staging-2")
    assert (got.value.code, got.value.message, got.value.details) == (
        expected.value.code,
        expected.value.message,
        expected.value.details,
    )
    assert child_events.codes == in_process_events.codes == ["hash_mismatch"]
    assert [(e.message, e.details) for e in child_events.events] == [
        (e.message, e.details) for e in in_process_events.events
    ]
    assert not (tmp_path / "staging-2" / "model.onnx").exists()


def test_a_refusal_keeps_its_code_and_event(site, tmp_path) -> None:
    """A target the release key never signed: ``target_not_in_tuf``, a security event, nothing staged."""
    _fleet, ddir, art = site
    events = ListSink()
    unsigned = copy.deepcopy(_assignment(art))
    unsigned.manifest.path = f"digits/9.9.9/{CLASS}/manifest.json"
    with pytest.raises(EdgefleetError) as info:
        _child(ddir, events).resolve(unsigned)
    assert info.value.code == "target_not_in_tuf"
    assert events.codes == ["target_not_in_tuf"]


def test_a_crashing_child_is_a_retryable_failure_and_leaves_nothing_in_the_slot(site) -> None:
    _fleet, ddir, art = site
    _child(ddir).resolve(_assignment(art))  # the manifest is cached: the install's fetch is the first child
    installer = SlotInstaller(
        ddir.root,
        _child(ddir, command=CRASHING),
        OnnxRuntimeAdapter(),
        config=InstallerConfig(trial=TrialPolicy(window_s=0)),
    )
    try:
        installer.recover()
        installer.apply(
            DesiredState.read(
                {
                    "device_id": "dev-1",
                    "hardware_class": CLASS,
                    "generation": 1,
                    "issued_at": NOW.isoformat(),
                    "expires_at": "2031-01-01T00:00:00+00:00",
                    "slots": {"default": _assignment(art).to_dict()},
                }
            )
        )
        report = installer.slot_reports()["default"]
        assert report.failure_code == "fetch_child_failed"
        assert report.active is None
        assert installer.wants_retry(), "a child that fell over is retried like a download failure"
    finally:
        installer.close()
    store = SlotStore(ddir.root, "default")
    assert store.read_active() is None
    assert not store.staging_dir.exists() or not any(store.staging_dir.iterdir())


def test_the_failure_says_how_the_child_ended(site, tmp_path) -> None:
    _fleet, ddir, art = site
    resolved = _child(ddir).resolve(_assignment(art))
    with pytest.raises(DownloadFailedError) as info:
        _child(ddir, command=CRASHING).fetch(resolved, tmp_path / "staging")
    assert info.value.code == "fetch_child_failed"
    assert "exit status 3" in info.value.message
    assert "boom: the child fell over" in info.value.message


def test_a_hanging_child_is_killed_at_its_time_limit(site, tmp_path, monkeypatch) -> None:
    _fleet, ddir, art = site
    monkeypatch.setattr(child_fetcher, "STARTUP_S", 0.5)
    started = time.monotonic()
    with pytest.raises(DownloadFailedError) as info:
        _child(ddir, command=HANGING, http_timeout_s=0.1).resolve(_assignment(art))
    assert time.monotonic() - started < 10
    assert info.value.code == "fetch_child_failed"
    assert "time limit" in info.value.message
    assert info.value.details["got"]["exit"] == "killed by signal 9"


def test_close_kills_a_running_child(site, tmp_path) -> None:
    _fleet, ddir, art = site
    fetcher = _child(ddir, command=HANGING)
    raised: list[BaseException] = []

    def resolve() -> None:
        try:
            fetcher.resolve(_assignment(art))
        except BaseException as exc:
            raised.append(exc)

    worker = threading.Thread(target=resolve)
    worker.start()
    deadline = time.monotonic() + 10
    while not fetcher._running and time.monotonic() < deadline:
        time.sleep(0.02)
    fetcher.close()
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert [getattr(e, "code", None) for e in raised] == ["fetch_child_failed"]
    assert "the agent is stopping" in str(raised[0])
    with pytest.raises(DownloadFailedError):  # closed: no further child starts
        fetcher.director_keys_pem()


def test_the_time_limit_covers_the_paced_download() -> None:
    """A class with a download budget downloads slowly on purpose: the child gets at least four times the
    paced transfer time (the downloader's own floor), and a large file more time than a small one."""
    budget = 64 * 1024
    payload = 10 * 1024 * 1024
    limit = child_timeout_s(payload_bytes=payload, files=2, http_timeout_s=60, max_bytes_per_s=budget)
    assert limit >= 4 * payload / budget
    assert child_timeout_s(payload_bytes=1, files=2, http_timeout_s=60, max_bytes_per_s=None) < limit


def test_the_parent_module_loads_no_tuf_or_cryptography() -> None:
    """Checked in a fresh interpreter: this process has imported everything already."""
    code = (
        "import sys, edgefleet.agent.install.child_fetcher, edgefleet.agent.app\n"
        "print(sorted({m.split('.')[0] for m in sys.modules}"
        " & {'tuf', 'securesystemslib', 'cryptography', 'httpx'}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "[]"
