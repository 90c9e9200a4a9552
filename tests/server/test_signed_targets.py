"""The director names manifests as the image repository signed them (TufRuntime.signed_target)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path

from tests.trust.fleet import write_artifact

from edgefleet.server.settings import Settings
from edgefleet.server.tuf_runtime import TufRuntime, keys_dir
from edgefleet.trust.keys import load_signer
from edgefleet.trust.publish import publish_to_repository

NOW = datetime(2030, 1, 1, tzinfo=timezone.utc)
CLASS = "medical-cart-cpu"


def _publish(runtime: TufRuntime, settings: Settings, directory: Path, version: str, counter: int) -> bytes:
    model = version.encode() * 64
    art = write_artifact(directory, version=version, release_counter=counter, model_bytes=model)
    assert runtime.repo is not None
    publish_to_repository(runtime.repo, art, load_signer(keys_dir(settings) / "release.key"), now=NOW)
    return (art / "manifest.json").read_bytes()


def test_signed_target_follows_each_publish(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "server", dev=True)
    runtime = TufRuntime.from_settings(settings, now=NOW)
    path = f"digits/1.0.0/{CLASS}/manifest.json"
    assert runtime.signed_target(path) is None  # nothing published yet

    raw = _publish(runtime, settings, tmp_path / "a1", "1.0.0", 1)
    target = runtime.signed_target(path)
    assert target is not None
    assert (target.path, target.length, target.sha256) == (path, len(raw), hashlib.sha256(raw).hexdigest())
    assert runtime.signed_target(f"digits/1.1.0/{CLASS}/manifest.json") is None

    raw2 = _publish(runtime, settings, tmp_path / "a2", "1.1.0", 2)  # a new timestamp: read again
    newer = runtime.signed_target(f"digits/1.1.0/{CLASS}/manifest.json")
    assert newer is not None
    assert newer.sha256 == hashlib.sha256(raw2).hexdigest()
    assert runtime.signed_target(path) == target  # earlier releases stay signed


def test_no_repository_names_nothing(tmp_path: Path) -> None:
    assert TufRuntime(repo=None).signed_target("digits/1.0.0/x/manifest.json") is None
