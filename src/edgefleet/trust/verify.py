"""Device side of content trust: refresh TUF metadata and cross-check director assignments against it.

* :class:`DeviceTrust` wraps ``tuf.ngclient.Updater`` (the TUF client workflow: root chain, rollback and
  freeze protection, thresholds, lengths, consistent snapshots) with our bounded HTTP fetcher, durable
  metadata writes (python-tuf renames without fsync) and an explicit reference time, so a device clock set
  back by an attacker can be replaced by the persisted time floor.
* :func:`check_assignment` (pure) accepts a director assignment only if the same target path is in
  verified TUF metadata with the same sha256 and length, signed for this device's hardware class, at a
  release counter not below the floor: the release floor signed into the verified targets for the target's
  model and class (``x-edgefleet-release-floors``, see ``edgefleet.trust.release_floor``), or a higher local
  minimum. The director alone can therefore delay updates, never choose bytes the release key did not sign
  nor a release the release team has put below its floor.

Every rejection is recorded as a :class:`~edgefleet.trust.events.SecurityEvent` before it is raised.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol
from urllib import parse

import httpx
from tuf.api import exceptions as tuf_exc
from tuf.api.metadata import Root, TargetFile
from tuf.ngclient import UpdaterConfig
from tuf.ngclient.fetcher import FetcherInterface

from edgefleet.durable import atomic_write_bytes
from edgefleet.protocol.errors import EdgefleetError, InvalidDocumentError
from edgefleet.trust.errors import (
    BelowReleaseFloorError,
    DiskFullError,
    DownloadFailedError,
    HashMismatchError,
    TargetNotInTufError,
    TrustError,
    TufMetadataRejectedError,
    WrongHardwareClassError,
)
from edgefleet.trust.events import NullSink, SecurityEventSink, event_from_error
from edgefleet.trust.fetch import TransferLimits, open_bounded_stream
from edgefleet.trust.release_floor import floor_for, line_key, release_floors_of
from edgefleet.trust.target_custom import custom_of
from edgefleet.trust.tuf_updater import TufUpdater

__all__ = [
    "DEFAULT_METADATA_LIMITS",
    "AssignedTarget",
    "DeviceTrust",
    "HttpxFetcher",
    "VerifiedTarget",
    "check_assignment",
    "device_updater_config",
    "target_url",
]

DEFAULT_METADATA_LIMITS = TransferLimits(
    max_bytes=5_000_000, deadline_s=120.0, min_bytes_per_s=1024.0, grace_s=10.0
)


def device_updater_config(limits: TransferLimits = DEFAULT_METADATA_LIMITS) -> UpdaterConfig:
    """The device's TUF client settings (the agent and the conformance client share them): at most 64 root
    rotations per refresh, timestamp metadata <= 16 KiB, targets metadata within the transfer cap."""
    return UpdaterConfig(
        max_root_rotations=64, timestamp_max_length=16_384, targets_max_length=limits.max_bytes
    )


class AssignedTarget(Protocol):
    """What the director assigns for one slot (``protocol.desired_state.Assignment`` fits)."""

    @property
    def target_path(self) -> str: ...
    @property
    def sha256(self) -> str: ...
    @property
    def length(self) -> int: ...


@dataclass(frozen=True)
class VerifiedTarget:
    """A target both the director assigned and the release key signed."""

    path: str
    sha256: str
    length: int
    model: str
    version: str
    hardware_class: str
    release_counter: int
    runtime: str
    manifest_sha256: str


def check_assignment(
    target_info: TargetFile | None,
    assignment: AssignedTarget,
    hardware_class: str,
    release_floor: int,
    signed_floors: Mapping[str, int] | None = None,
) -> VerifiedTarget:
    """Pure: accept ``assignment`` only if it matches signed ``target_info`` for this device.

    The floor is the larger of ``release_floor`` (a local minimum) and the signed floor of the target's
    ``<model>/<hardware_class>`` in ``signed_floors`` (from the same verified targets metadata)."""
    if target_info is None or target_info.path != assignment.target_path:
        raise TargetNotInTufError(
            "assigned target is not in verified TUF metadata",
            expected="a target signed by the release key",
            got=assignment.target_path,
        )
    signed_sha = target_info.hashes.get("sha256")
    if (signed_sha, target_info.length) != (assignment.sha256, assignment.length):
        raise HashMismatchError(
            "assignment differs from the signed target",
            expected={"sha256": signed_sha, "length": target_info.length},
            got={"sha256": assignment.sha256, "length": assignment.length},
        )
    try:
        custom = custom_of(target_info)
    except InvalidDocumentError as exc:
        raise TargetNotInTufError(
            "target lacks signed edgefleet fields", expected="custom.edgefleet", got=target_info.path
        ) from exc
    if custom.hardware_class != hardware_class:
        raise WrongHardwareClassError(
            "target was released for another hardware class",
            expected=hardware_class,
            got=custom.hardware_class,
        )
    signed_floor = floor_for(signed_floors or {}, custom.model, custom.hardware_class)
    floor = max(release_floor, signed_floor)
    if custom.release_counter < floor:
        raise BelowReleaseFloorError(
            f"target release counter is below the release floor of "
            f"{line_key(custom.model, custom.hardware_class)}",
            expected=f">= {floor}",
            got=custom.release_counter,
            details={"signed_floor": signed_floor, "local_floor": release_floor, "path": target_info.path},
        )
    return VerifiedTarget(
        path=target_info.path,
        sha256=assignment.sha256,
        length=assignment.length,
        model=custom.model,
        version=custom.version,
        hardware_class=custom.hardware_class,
        release_counter=custom.release_counter,
        runtime=custom.runtime,
        manifest_sha256=custom.manifest_sha256,
    )


def target_url(target_base_url: str, path: str, sha256: str, *, consistent_snapshot: bool = True) -> str:
    """Where a target's bytes live on a mirror (``dir/<sha256>.name`` with consistent snapshots)."""
    base = target_base_url if target_base_url.endswith("/") else target_base_url + "/"
    if consistent_snapshot:
        dirname, sep, basename = path.rpartition("/")
        path = f"{dirname}{sep}{sha256}.{basename}"
    return base + path


class HttpxFetcher(FetcherInterface):
    """python-tuf fetcher over our bounded httpx stream (deadline, throughput floor, byte cap)."""

    def __init__(self, client: httpx.Client, limits: TransferLimits = DEFAULT_METADATA_LIMITS) -> None:
        self._client = client
        self._limits = limits

    def _fetch(self, url: str) -> Iterator[bytes]:
        # Check the status before returning, so python-tuf sees DownloadHTTPError (404 ends a root walk).
        stream = open_bounded_stream(self._client, url, self._limits)
        bounded = stream.__enter__()
        status = bounded.response.status_code
        if status != 200:
            stream.__exit__(None, None, None)
            raise tuf_exc.DownloadHTTPError(f"HTTP {status} for {url}", status)

        def body() -> Iterator[bytes]:
            try:
                yield from bounded.chunks
            finally:
                stream.__exit__(None, None, None)

        return body()


def _translate(exc: Exception) -> TrustError:
    """python-tuf's exceptions -> ours (stable codes)."""
    if isinstance(exc, TrustError):
        return exc
    if isinstance(exc, tuf_exc.DownloadLengthMismatchError):
        return TufMetadataRejectedError(
            "metadata larger than allowed",
            code="tuf_metadata_rejected",
            details={"reason": "oversized"},
            got=str(exc),
        )
    if isinstance(exc, tuf_exc.DownloadError):
        cause = exc.__cause__
        if isinstance(cause, TrustError):
            return cause
        if isinstance(cause, EdgefleetError):
            return DownloadFailedError(cause.message, details=cause.details)
        return DownloadFailedError(f"metadata download failed: {exc}", got=str(exc))
    if isinstance(exc, tuf_exc.RepositoryError):
        return TufMetadataRejectedError(
            f"TUF metadata rejected: {exc}", details={"reason": type(exc).__name__}, got=str(exc)
        )
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return DiskFullError("no space left for TUF metadata", got=str(exc))
    return TufMetadataRejectedError(
        f"TUF client failed: {exc}", details={"reason": type(exc).__name__}, got=str(exc)
    )


class DeviceTrust:
    """The device's view of the image repository. One instance per refresh cycle is fine.

    ``bootstrap_root`` is the root received at enrollment: every refresh re-walks the locally cached root
    chain from it, so a tampered cached ``root.json`` cannot become the trust anchor. Pass ``None`` only to
    trust the cached ``root.json`` (the conformance client does, by protocol).
    """

    def __init__(
        self,
        metadata_dir: Path,
        metadata_url: str,
        target_base_url: str,
        *,
        client: httpx.Client,
        bootstrap_root: bytes | None,
        limits: TransferLimits = DEFAULT_METADATA_LIMITS,
        events: SecurityEventSink | None = None,
        config: UpdaterConfig | None = None,
    ) -> None:
        self.metadata_dir = Path(metadata_dir)
        self.metadata_url = metadata_url
        self.target_base_url = target_base_url
        self._fetcher = HttpxFetcher(client, limits)
        self._bootstrap = bootstrap_root
        self._events: SecurityEventSink = events or NullSink()
        self._config = config or device_updater_config(limits)
        self._updater: TufUpdater | None = None

    @staticmethod
    def initialize(metadata_dir: Path, trusted_root: bytes) -> None:
        """Store the trusted root (from enrollment) as ``root.json`` in an empty metadata dir."""
        from tuf.api.metadata import Metadata

        try:
            Metadata[Root].from_bytes(trusted_root)
        except Exception as exc:
            raise TufMetadataRejectedError("trusted root is not valid root metadata", got=str(exc)) from exc
        os.makedirs(metadata_dir, exist_ok=True)
        atomic_write_bytes(Path(metadata_dir) / "root.json", trusted_root)

    def _fail(self, error: TrustError, now: datetime) -> TrustError:
        if type(error) is not DownloadFailedError:  # plain network trouble is not a security event
            self._events.record(event_from_error(error, at=now))
        return error

    def refresh(self, now: datetime) -> None:
        """Run the TUF client workflow with ``now`` as the reference time (pass max(clock, time floor))."""
        try:
            updater = TufUpdater(
                self.metadata_dir,
                self.metadata_url,
                target_base_url=self.target_base_url,
                fetcher=self._fetcher,
                config=self._config,
                bootstrap=self._bootstrap,
                reference_time=now,  # the device's judged time, not the raw clock
            )
            updater.refresh()
        except Exception as exc:
            raise self._fail(_translate(exc), now) from exc
        self._updater = updater

    def root_version(self) -> int:
        return self.trusted_root().version

    def trusted_root(self) -> Root:
        """The newest root the last ``refresh`` verified through the chain from the bootstrap root."""
        if self._updater is None:
            raise RuntimeError("refresh() first")
        return self._updater.trusted_root

    def release_floors(self, now: datetime) -> dict[str, int]:
        """The release floors signed into the verified targets (``{"<model>/<class>": counter}``)."""
        if self._updater is None:
            self.refresh(now)
        assert self._updater is not None
        try:
            return release_floors_of(self._updater.trusted_targets)
        except InvalidDocumentError as exc:  # signed, yet malformed: fail closed
            raise self._fail(
                TufMetadataRejectedError(
                    f"verified targets carry invalid release floors: {exc.message}",
                    details={"reason": "invalid_release_floors", **exc.details},
                ),
                now,
            ) from exc

    def target_info(self, path: str, now: datetime) -> TargetFile | None:
        if self._updater is None:
            self.refresh(now)
        assert self._updater is not None
        try:
            return self._updater.get_targetinfo(path)
        except Exception as exc:
            raise self._fail(_translate(exc), now) from exc

    def signed_targets(self, now: datetime) -> Mapping[str, TargetFile]:
        """Every target of the verified top-level targets metadata (where a device finds deltas)."""
        if self._updater is None:
            self.refresh(now)
        assert self._updater is not None
        return dict(self._updater.trusted_targets.targets)

    def verify_assignment(
        self, assignment: AssignedTarget, *, hardware_class: str, release_floor: int, now: datetime
    ) -> VerifiedTarget:
        """Refreshed metadata + :func:`check_assignment` with the signed release floors (``release_floor``
        is an extra local minimum); rejections become security events."""
        info = self.target_info(assignment.target_path, now)
        floors = self.release_floors(now)
        try:
            return check_assignment(info, assignment, hardware_class, release_floor, floors)
        except TrustError as exc:
            raise self._fail(exc, now) from None

    def url_for(self, target: VerifiedTarget | TargetFile) -> str:
        if isinstance(target, TargetFile):
            path, sha256 = target.path, target.hashes["sha256"]
        else:
            path, sha256 = target.path, target.sha256
        consistent = True if self._updater is None else bool(self._updater.trusted_root.consistent_snapshot)
        return target_url(self.target_base_url, path, sha256, consistent_snapshot=consistent)

    def cached_target(self, info: TargetFile, target_dir: Path, *, now: datetime) -> Path | None:
        """The file :meth:`download_to` would write, when it is already there and matches ``info``'s
        verified length and hashes (so it is not fetched again); ``None`` otherwise."""
        if self._updater is None:
            self.refresh(now)
        assert self._updater is not None
        filepath = Path(target_dir) / parse.quote(info.path, "")
        found = self._updater.find_cached_target(info, str(filepath))
        return Path(found) if found else None

    def download_to(
        self, info: TargetFile, target_dir: Path, *, now: datetime, prefix_with_hash: bool = True
    ) -> Path:
        """Small-target download through python-tuf (conformance client); artifacts go through
        agent.install.download."""
        if self._updater is None:
            self.refresh(now)
        assert self._updater is not None
        self._updater.config.prefix_targets_with_hash = prefix_with_hash
        filepath = Path(target_dir) / parse.quote(info.path, "")
        try:
            self._updater.download_target(info, str(filepath))
        except Exception as exc:
            raise self._fail(_translate(exc), now) from exc
        return filepath
