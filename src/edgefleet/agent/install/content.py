"""Verified artifact content for the installer: TUF-checked, then downloaded resumably into staging.

For one director assignment this fetcher (1) refreshes the device's TUF metadata from the bootstrap root
pinned at enrollment, judged at ``max(clock, time floor)``; (2) checks the assigned target is the one the
release key signed, for this device's class, at a release counter not below the floor; (3) downloads and
verifies the signed ``manifest.json`` and refuses an assignment whose manifest differs from it; (4) checks and
downloads every file that signed manifest lists. A compromised control plane can therefore delay updates but
not make the device install bytes the release key did not sign.

The floor is derived from the verified metadata itself: the release floor the release key signed into the
targets for the target's model and class (``x-edgefleet-release-floors``). TUF never lets a device go back
to an older targets version, so a raised floor stays raised. The constructor's ``release_floor`` is only
an extra local minimum (default 0).

Downloads resume from ``<data dir>/downloads/<sha256>.partial``; starting one sweeps stale partial files
of targets outside the artifact being fetched (an assignment that changed), see ``agent.install.download``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edgefleet.agent.datadir import DataDir, DeviceIdentity
from edgefleet.agent.install.download import Downloader, DownloadPolicy
from edgefleet.protocol.desired_state import Assignment
from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.protocol.manifest import MAX_MANIFEST_BYTES, ArtifactManifest, artifact_target_path
from edgefleet.trust.director import director_keys_in_root, effective_now
from edgefleet.trust.errors import HashMismatchError, TargetNotInTufError, TrustError
from edgefleet.trust.events import SecurityEventSink, event_from_error
from edgefleet.trust.verify import AssignedTarget, DeviceTrust, VerifiedTarget

__all__ = ["MANIFEST_FILE", "NoTrustRootError", "TufArtifactFetcher"]

MANIFEST_FILE = "manifest.json"


class NoTrustRootError(TrustError):
    """The device holds no TUF root (its server had no image repository at enrollment)."""

    code = "no_trust_root"


@dataclass(frozen=True)
class _Target:
    target_path: str
    sha256: str
    length: int


class TufArtifactFetcher:
    def __init__(
        self,
        data_dir: DataDir,
        identity: DeviceIdentity,
        *,
        client: httpx.Client,
        now: Callable[[], datetime],
        release_floor: int = 0,
        events: SecurityEventSink | None = None,
        policy: DownloadPolicy | None = None,
    ) -> None:
        self._ddir = data_dir
        self._identity = identity
        self._client = client
        self._now = now
        self._floor = release_floor
        self._events = events
        self._policy = policy

    def fetch(self, assignment: Assignment, staging_dir: Path) -> dict[str, Path]:
        """Place verified copies of every file of the assigned artifact at ``staging_dir/<manifest path>``.

        Downloads go to ``<data dir>/downloads/<sha256>`` first (resumable across attempts and restarts) and
        are moved into ``staging_dir`` only once their hash verified.
        """
        now = effective_now(self._now(), self._ddir.read_time_floor())
        trust = self._trust()
        trust.refresh(now)
        downloader = Downloader(
            self._ddir.root / "downloads", self._client, self._policy, events=self._events
        )
        def check(target: AssignedTarget) -> VerifiedTarget:
            return trust.verify_assignment(
                target, hardware_class=self._identity.hardware_class, release_floor=self._floor, now=now
            )

        check(assignment)

        manifest = assignment.manifest
        manifest_path = artifact_target_path(manifest, MANIFEST_FILE)
        manifest_target = trust.target_info(manifest_path, now)
        if manifest_target is None:
            raise self._reject(
                TargetNotInTufError("the artifact's manifest is not a signed target", got=manifest_path), now
            )
        # Keep the partial downloads of this artifact (the director's file list only decides what is kept).
        keep = {manifest_target.hashes["sha256"], *(f.sha256 for f in manifest.files)}
        signed_manifest_file = downloader.fetch(
            trust.url_for(manifest_target),
            sha256=manifest_target.hashes["sha256"],
            length=manifest_target.length,
            keep=keep,
        )
        signed = _read_manifest(signed_manifest_file)
        signed_manifest_file.unlink(missing_ok=True)
        if signed != manifest:  # both parsed once into the typed model: compared as such, not re-serialized
            differing = sorted(
                name
                for name in {*signed.model_dump(), *manifest.model_dump()}
                if getattr(signed, name, None) != getattr(manifest, name, None)
            )
            raise self._reject(
                HashMismatchError(
                    "the director's manifest differs from the release-signed one",
                    code="manifest_mismatch",
                    expected="the release-signed manifest",
                    got={"differing_fields": differing[:16]},
                ),
                now,
            )
        files: dict[str, Path] = {}
        keep = {manifest_target.hashes["sha256"], *(f.sha256 for f in signed.files)}
        downloader.ensure_space({f.sha256: f.length for f in signed.files}, keep=keep)  # the whole artifact
        for entry in signed.files:
            target = _Target(artifact_target_path(signed, entry.path), entry.sha256, entry.length)
            verified = check(target)
            downloaded = downloader.fetch(
                trust.url_for(verified), sha256=entry.sha256, length=entry.length, keep=keep
            )
            placed = staging_dir / entry.path
            placed.parent.mkdir(parents=True, exist_ok=True)
            os.replace(downloaded, placed)
            files[entry.path] = placed
        return files

    def director_keys(self) -> list[Ed25519PublicKey]:
        """Refresh TUF metadata and return the director keys its verified root names (key rotation)."""
        trust = self._trust()
        trust.refresh(effective_now(self._now(), self._ddir.read_time_floor()))
        return director_keys_in_root(trust.trusted_root().unrecognized_fields)

    def _trust(self) -> DeviceTrust:
        root = self._ddir.tuf_root_path
        if not root.exists():
            raise NoTrustRootError(
                "no TUF root was pinned at enrollment: content cannot be verified, nothing is installed",
                got=str(root),
            )
        root_bytes = root.read_bytes()
        metadata_dir = self._ddir.root / "tuf"
        if not (metadata_dir / "root.json").exists():
            DeviceTrust.initialize(metadata_dir, root_bytes)
        server = self._identity.server_url
        return DeviceTrust(
            metadata_dir,
            f"{server}/tuf/metadata/",
            f"{server}/tuf/targets/",
            client=self._client,
            bootstrap_root=root_bytes,
            events=self._events,
        )

    def _reject(self, error: TrustError, now: datetime) -> TrustError:
        if self._events is not None:
            self._events.record(event_from_error(error, at=now))
        return error


def _read_manifest(path: Path) -> ArtifactManifest:
    raw = path.read_bytes()
    if len(raw) > MAX_MANIFEST_BYTES:
        raise InvalidDocumentError("signed manifest too large", code="document_too_large", got=len(raw))
    try:
        return ArtifactManifest.parse(json.loads(raw))
    except json.JSONDecodeError as exc:
        raise InvalidDocumentError("signed manifest is not JSON", code="malformed_json") from exc
