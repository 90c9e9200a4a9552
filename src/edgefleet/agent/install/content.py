"""Verified artifact content for the installer: TUF-checked, then downloaded resumably into staging.

A director assignment names the artifact's ``manifest.json`` by TUF target (path, length, sha256). For it
this fetcher (1) refreshes the device's TUF metadata from the bootstrap root pinned at enrollment, judged at
``max(clock, time floor)``; (2) checks the named manifest target is the one the release key signed, with the
same hashes, for this device's class, at a release counter not below the floor; (3) downloads those bytes
(verified on the way in) and parses them once: the manifest comes from TUF alone (``resolve``); (4) checks
and downloads every file that manifest lists (``fetch``). A compromised control plane can therefore delay
updates but not make the device install bytes the release key did not sign.

The floor is derived from the verified metadata itself: the release floor the release key signed into the
targets for the target's model and class (``x-edgefleet-release-floors``). TUF never lets a device go back
to an older targets version, so a raised floor stays raised. The constructor's ``release_floor`` is only
an extra local minimum (default 0).

Metadata and targets come from the device's content base URL (``DeviceIdentity.content_base_url``): any
static host or CDN serving the layout ``edgefleet tuf export`` writes, or the control plane's ``/tuf``. The
host is not trusted: every byte is verified against the pinned root, so a wrong or hostile host can only
withhold content (like a network outage), never change it.

Downloads resume from ``<data dir>/downloads/<sha256>.partial``; starting one sweeps stale partial files
of targets outside the artifact being fetched (an assignment that changed), see ``agent.install.download``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edgefleet.agent.datadir import DataDir, DeviceIdentity
from edgefleet.agent.install.delta_fetch import DeltaFiles, choose_delta, delta_candidates, held_files
from edgefleet.agent.install.download import Downloader, DownloadPolicy
from edgefleet.agent.install.faults import CrashHook, no_crash
from edgefleet.agent.install.fetch import ResolvedAssignment, manifest_from_bytes
from edgefleet.agent.install.manifest_cache import ManifestCache
from edgefleet.agent.install.steps import TransferReport
from edgefleet.protocol.names import artifact_target_path
from edgefleet.protocol.wire.desired_state import Assignment
from edgefleet.trust.director import director_keys_in_root, effective_now
from edgefleet.trust.errors import TrustError
from edgefleet.trust.events import SecurityEventSink, event_from_error
from edgefleet.trust.target_custom import target_prefix
from edgefleet.trust.verify import AssignedTarget, DeviceTrust, VerifiedTarget

__all__ = ["NoTrustRootError", "TufArtifactFetcher"]

log = logging.getLogger("edgefleet.agent.install")


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
        crash: CrashHook = no_crash,
    ) -> None:
        self._ddir = data_dir
        self._crash = crash
        self._identity = identity
        self._client = client
        self._now = now
        self._floor = release_floor
        self._events = events
        self._policy = policy
        self._manifests = ManifestCache(data_dir.root)
        self.last_transfer: TransferReport | None = None
        """What the last ``fetch`` downloaded (deltas, fallbacks); the download step reports it."""

    def resolve(self, assignment: Assignment) -> ResolvedAssignment:
        """The assigned manifest, taken from TUF alone: the director names its target (path, length, sha256);
        the device checks that target in its verified TUF metadata (same hashes, its class, release floor),
        downloads those bytes (verified on the way in) and parses them once.

        A manifest once verified is kept content-addressed (``agent.install.manifest_cache``, its hash checked
        again when read), so a poll that changes nothing for a slot costs no download.
        ``fetch`` checks the target in TUF again before any file of it is installed."""
        target = assignment.manifest
        cached = self._manifests.read(target)
        if cached is not None:
            return ResolvedAssignment(assignment.artifact_id, manifest_from_bytes(cached, target), target)
        now = effective_now(self._now(), self._ddir.read_time_floor())
        trust = self._trust()
        trust.refresh(now)
        verified = self._check(trust, target, now)
        downloader = Downloader(
            self._ddir.root / "downloads", self._client, self._policy, events=self._events
        )
        downloaded = downloader.fetch(trust.url_for(verified), sha256=target.sha256, length=target.length)
        raw = downloaded.read_bytes()  # checked against sha256 and length by the downloader, while writing
        try:
            manifest = manifest_from_bytes(raw, target)
        except TrustError as exc:
            raise self._reject(exc, now) from None
        self._manifests.keep(downloaded, target)
        return ResolvedAssignment(assignment.artifact_id, manifest, target)

    def fetch(self, assignment: ResolvedAssignment, staging_dir: Path) -> dict[str, Path]:
        """Place verified copies of every file of the assigned artifact at ``staging_dir/<manifest path>``.

        The manifest's target is checked in freshly refreshed TUF metadata first, then each file's. Downloads
        go to ``<data dir>/downloads/<sha256>`` first (resumable across attempts and restarts) and are moved
        into ``staging_dir`` only once their hash verified.
        """
        now = effective_now(self._now(), self._ddir.read_time_floor())
        trust = self._trust()
        trust.refresh(now)
        self._check(trust, assignment.target, now)
        manifest = assignment.manifest
        downloader = Downloader(
            self._ddir.root / "downloads", self._client, self._policy, events=self._events
        )
        # Keep the partial downloads of this artifact's files; others (an assignment that changed) are swept.
        keep = {f.sha256 for f in manifest.files}
        files: dict[str, Path] = {}
        downloader.ensure_space({f.sha256: f.length for f in manifest.files}, keep=keep)  # the whole artifact
        report = TransferReport()
        self.last_transfer = report
        signed = trust.signed_targets(now)
        held = held_files(self._ddir.root)
        deltas = DeltaFiles(downloader, self._ddir.root / "downloads", crash=self._crash)
        prefix = target_prefix(manifest.model, manifest.version, manifest.hardware_class)
        for entry in manifest.files:
            target = _Target(artifact_target_path(manifest, entry.path), entry.sha256, entry.length)
            verified = self._check(trust, target, now)  # the full target: what the result must be
            placed = staging_dir / entry.path
            report.full_bytes += entry.length
            if entry.sha256 in held:  # unchanged since a version the device holds: copy, download nothing
                placed.parent.mkdir(parents=True, exist_ok=True)
                if _copy_verified(held[entry.sha256], placed, entry.sha256, entry.length):
                    files[entry.path] = placed
                    continue
            choice, reason = choose_delta(
                delta_candidates(signed, prefix, entry.path),
                held,
                hardware_class=self._identity.hardware_class,
                result_path=target.target_path,
                sha256=entry.sha256,
                length=entry.length,
            )
            if choice is not None:
                reason = deltas.rebuild(
                    choice, trust.url_for(choice.target), placed, keep=keep | {choice.target.hashes["sha256"]}
                )
                if reason is None:
                    report.bytes_downloaded += choice.target.length
                    report.delta_files += 1
                    files[entry.path] = placed
                    continue
            if reason is not None:
                report.fallbacks[entry.path] = reason
                log.warning("event=delta_fallback path=%s reason=%s", target.target_path, reason)
            downloaded = downloader.fetch(
                trust.url_for(verified), sha256=entry.sha256, length=entry.length, keep=keep
            )
            report.bytes_downloaded += entry.length
            placed.parent.mkdir(parents=True, exist_ok=True)
            os.replace(downloaded, placed)
            files[entry.path] = placed
        return files

    def _check(self, trust: DeviceTrust, target: AssignedTarget, now: datetime) -> VerifiedTarget:
        return trust.verify_assignment(
            target, hardware_class=self._identity.hardware_class, release_floor=self._floor, now=now
        )

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
        base = self._identity.content_base_url  # a static host or CDN, or the control plane's /tuf
        return DeviceTrust(
            metadata_dir,
            f"{base}/metadata/",
            f"{base}/targets/",
            client=self._client,
            bootstrap_root=root_bytes,
            events=self._events,
        )

    def _reject(self, error: TrustError, now: datetime) -> TrustError:
        if self._events is not None:
            self._events.record(event_from_error(error, at=now))
        return error


def _copy_verified(source: Path, dest: Path, sha256: str, length: int) -> bool:
    """Copy a held file into staging; True only when the copy has the signed sha256 and length (fsynced)."""
    digest = hashlib.sha256()
    size = 0
    try:
        with source.open("rb") as src, dest.open("wb") as dst:
            while chunk := src.read(1 << 20):
                size += len(chunk)
                if size > length:
                    break
                digest.update(chunk)
                dst.write(chunk)
            dst.flush()
            os.fsync(dst.fileno())
    except OSError:
        dest.unlink(missing_ok=True)
        return False
    if (digest.hexdigest(), size) != (sha256, length):
        dest.unlink(missing_ok=True)
        return False
    return True
