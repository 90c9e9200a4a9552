"""The image repository (server side): a directory of static TUF files that any plain mirror can serve.

Layout (consistent snapshots)::

    metadata/N.root.json, metadata/root.json   every root version, and the newest
    metadata/N.targets.json                    signed offline by the model-release key (uploaded)
    metadata/N.snapshot.json                   signed here with the online snapshot key
    metadata/timestamp.json                    signed here with the online timestamp key (short expiry)
    targets/<dir>/<sha256>.<name>              artifact files, content-addressed: cache them forever

The server never holds the release key: :meth:`ImageRepository.accept_targets` checks an uploaded
``targets.json`` against root's ``targets`` role (threshold of distinct keys), a strictly higher version,
an expiry in the future, the edgefleet ``custom`` fields, and every listed file's length and sha256. Only
then does it store the files, the targets metadata, a new snapshot and last a new timestamp: a mirror
copying in that order never serves a timestamp that points at missing files.

Only ``timestamp.json`` and ``root.json`` change in place; everything else is immutable once written.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

from securesystemslib.signer import Signer
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, Targets, Timestamp
from tuf.api.serialization import DeserializationError

from edgefleet.durable import atomic_write_bytes, fsync_dir
from edgefleet.protocol.document import is_safe_relpath
from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.trust.errors import TargetsRejectedError
from edgefleet.trust.release_floor import release_floors_of
from edgefleet.trust.target_custom import custom_of

_Role = TypeVar("_Role", Root, Timestamp, Snapshot, Targets)

__all__ = [
    "MAX_METADATA_BYTES",
    "SNAPSHOT_EXPIRY",
    "TIMESTAMP_EXPIRY",
    "TIMESTAMP_REFRESH_MARGIN",
    "ImageRepository",
    "OnlineSigners",
    "refresh_due",
    "signed_by_distinct_threshold",
    "target_storage_name",
]

MAX_METADATA_BYTES = 4_000_000
TIMESTAMP_EXPIRY = timedelta(days=1)
SNAPSHOT_EXPIRY = timedelta(days=7)
TIMESTAMP_REFRESH_MARGIN = timedelta(hours=12)
SNAPSHOT_REFRESH_MARGIN = timedelta(days=3)
_METADATA_NAME = re.compile(r"^(?:[1-9][0-9]{0,9}\.)?(?:root|targets|snapshot|timestamp)\.json$")


@dataclass(frozen=True)
class OnlineSigners:
    snapshot: Signer
    timestamp: Signer


def refresh_due(now: datetime, expires_at: datetime, margin: timedelta) -> bool:
    """Pure: re-sign when less than ``margin`` is left before ``expires_at``."""
    return expires_at - now < margin


def target_storage_name(path: str, sha256: str) -> str:
    """``a/b/model.onnx`` -> ``a/b/<sha256>.model.onnx`` (the name python-tuf's client asks for)."""
    dirname, sep, basename = path.rpartition("/")
    return f"{dirname}{sep}{sha256}.{basename}"


def signed_by_distinct_threshold(root: Root, role: str, md: Metadata[_Role]) -> bool:
    """Pure: ``md`` carries valid signatures of a threshold of *distinct* keys of ``root``'s ``role``.

    python-tuf counts key ids; a root listing one public key under two ids would count it twice."""
    result = root.get_verification_result(role, md.signed_bytes, md.signatures)
    distinct = {str(key.keyval) for key in result.signed.values()}
    return result.verified and len(distinct) >= result.threshold


def _reject(message: str, *, expected: object, got: object) -> TargetsRejectedError:
    return TargetsRejectedError(message, expected=expected, got=got)


def _sha256_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    length = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            length += len(chunk)
    return digest.hexdigest(), length


class ImageRepository:
    """A TUF image repository in ``directory``; holds only the online snapshot and timestamp keys."""

    def __init__(self, directory: Path, signers: OnlineSigners) -> None:
        self.directory = Path(directory)
        self.metadata_dir = self.directory / "metadata"
        self.targets_dir = self.directory / "targets"
        self._signers = signers

    # ---- creation -------------------------------------------------------------------------------------

    @classmethod
    def create(
        cls, directory: Path, root_bytes: bytes, signers: OnlineSigners, *, now: datetime
    ) -> ImageRepository:
        """A new repository from a signed root; targets start empty (version 0, until the first publish)."""
        repo = cls(directory, signers)
        if (repo.metadata_dir / "root.json").exists():
            raise _reject("repository already exists", expected="an empty directory", got=str(directory))
        root_md = repo._parse(root_bytes, Root)
        try:
            root_md.signed.verify_delegate(Root.type, root_md.signed_bytes, root_md.signatures)
        except UnsignedMetadataError as exc:
            raise _reject(
                "root is not signed by its own threshold", expected="valid root", got=str(exc)
            ) from exc
        repo.targets_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(repo.metadata_dir / f"{root_md.signed.version}.root.json", root_bytes)
        atomic_write_bytes(repo.metadata_dir / "root.json", root_bytes)
        with repo._locked():
            repo._write_snapshot_and_timestamp(now, targets_meta=None)
        return repo

    # ---- reading --------------------------------------------------------------------------------------

    def metadata_path(self, name: str) -> Path:
        """Path of a metadata file to serve (``root.json``, ``3.targets.json``...); refuses other names."""
        if not _METADATA_NAME.fullmatch(name):
            raise FileNotFoundError(name)
        return self.metadata_dir / name

    def target_file_path(self, name: str) -> Path:
        """Path of a stored target file (``dir/<sha256>.name``) to serve; refuses unsafe names."""
        if not is_safe_relpath(name):
            raise FileNotFoundError(name)
        return self.targets_dir / name

    def root(self) -> Metadata[Root]:
        return Metadata[Root].from_bytes((self.metadata_dir / "root.json").read_bytes())

    def timestamp(self) -> Metadata[Timestamp]:
        return Metadata[Timestamp].from_bytes((self.metadata_dir / "timestamp.json").read_bytes())

    def snapshot(self) -> Metadata[Snapshot]:
        version = self.timestamp().signed.snapshot_meta.version
        return Metadata[Snapshot].from_bytes((self.metadata_dir / f"{version}.snapshot.json").read_bytes())

    def targets_version(self) -> int:
        meta = self.snapshot().signed.meta.get("targets.json")
        return 0 if meta is None else meta.version

    def targets(self) -> Metadata[Targets] | None:
        version = self.targets_version()
        if version == 0:
            return None
        return Metadata[Targets].from_bytes((self.metadata_dir / f"{version}.targets.json").read_bytes())

    # ---- accepting a release --------------------------------------------------------------------------

    def accept_targets(self, targets_bytes: bytes, files: Mapping[str, Path], *, now: datetime) -> int:
        """Check and publish a ``targets.json`` signed by the release key; returns its version.

        ``files`` maps target paths to uploaded local files; targets already stored need not be re-sent.
        Raises ``TargetsRejectedError`` and changes nothing when any check fails.
        """
        with self._locked():
            md = self._parse(targets_bytes, Targets)
            root = self.root().signed
            self._check_signed_by_role(root, Targets.type, md)
            current = self.targets_version()
            if md.signed.version <= current:
                raise _reject("targets version must increase", expected=f"> {current}", got=md.signed.version)
            if md.signed.is_expired(now):
                raise _reject(
                    "targets metadata already expired",
                    expected=f"expires after {now}",
                    got=str(md.signed.expires),
                )
            if md.signed.delegations is not None:
                raise _reject("delegations are not supported", expected="no delegations", got="delegations")
            self._check_release_floors(md.signed)
            to_store: dict[str, Path] = {}
            for path, info in md.signed.targets.items():
                if not is_safe_relpath(path):
                    raise _reject("unsafe target path", expected="relative path without '..'", got=path)
                try:
                    custom_of(info)
                except InvalidDocumentError as exc:
                    raise _reject(exc.message, expected=exc.details.get("expected"), got=path) from exc
                sha256 = info.hashes.get("sha256")
                if sha256 is None:
                    raise _reject("target without sha256", expected="sha256 hash", got=path)
                stored = self.targets_dir / target_storage_name(path, sha256)
                source = files.get(path)
                if source is None:
                    if not stored.exists():
                        raise _reject("target file missing from upload", expected=path, got=sorted(files))
                    continue
                got_sha, got_len = _sha256_file(source)
                if (got_sha, got_len) != (sha256, info.length):
                    raise _reject(
                        f"uploaded file {path} does not match its signed hash",
                        expected={"sha256": sha256, "length": info.length},
                        got={"sha256": got_sha, "length": got_len},
                    )
                to_store[target_storage_name(path, sha256)] = source
            for name, source in to_store.items():
                self._store_target(name, source)
            atomic_write_bytes(self.metadata_dir / f"{md.signed.version}.targets.json", targets_bytes)
            meta = MetaFile(
                version=md.signed.version,
                length=len(targets_bytes),
                hashes={"sha256": hashlib.sha256(targets_bytes).hexdigest()},
            )
            self._write_snapshot_and_timestamp(now, targets_meta=meta)
            return md.signed.version

    def install_root(self, root_bytes: bytes, *, now: datetime) -> int:
        """Install root N+1 (signed by a threshold of root N's keys and of its own); re-sign online roles."""
        with self._locked():
            new = self._parse(root_bytes, Root)
            old = self.root().signed
            try:
                result = new.signed.get_root_verification_result(old, new.signed_bytes, new.signatures)
            except ValueError as exc:
                raise _reject(str(exc), expected=old.version + 1, got=new.signed.version) from exc
            if not result.verified:
                raise _reject(
                    "new root is not signed by a threshold of the old and of the new root keys",
                    expected="both thresholds",
                    got={"old": len(result.first.signed), "new": len(result.second.signed)},
                )
            atomic_write_bytes(self.metadata_dir / f"{new.signed.version}.root.json", root_bytes)
            atomic_write_bytes(self.metadata_dir / "root.json", root_bytes)
            self._write_snapshot_and_timestamp(now, targets_meta=None)
            return new.signed.version

    # ---- online roles ---------------------------------------------------------------------------------

    def maybe_refresh_timestamp(self, now: datetime) -> bool:
        """Re-sign timestamp (and snapshot) when they come close to expiry. Returns whether it did."""
        with self._locked():
            ts = self.timestamp().signed
            snap = self.snapshot().signed
            if refresh_due(now, snap.expires, SNAPSHOT_REFRESH_MARGIN):
                self._write_snapshot_and_timestamp(now, targets_meta=None)
                return True
            if refresh_due(now, ts.expires, TIMESTAMP_REFRESH_MARGIN):
                self._write_timestamp(now, self.timestamp().signed.snapshot_meta)
                return True
            return False

    # ---- internals ------------------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time across processes sharing this directory (one host)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / ".lock", "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    @staticmethod
    def _parse(data: bytes, kind: type[_Role]) -> Metadata[_Role]:
        if len(data) > MAX_METADATA_BYTES:
            raise _reject("metadata too large", expected=f"<= {MAX_METADATA_BYTES} bytes", got=len(data))
        try:
            md = Metadata.from_bytes(data)
        except (DeserializationError, ValueError, TypeError, KeyError) as exc:
            raise _reject(f"not valid TUF metadata: {exc}", expected=kind.type, got=str(exc)) from exc
        if not isinstance(md.signed, kind):
            raise _reject("wrong metadata type", expected=kind.type, got=md.signed.type)
        return md

    def _check_release_floors(self, targets: Targets) -> None:
        """The signed floors must be well formed and never lower than the current ones."""
        try:
            floors = release_floors_of(targets)
        except InvalidDocumentError as exc:
            raise _reject(
                exc.message, expected=exc.details.get("expected"), got=exc.details.get("got")
            ) from exc
        current = self.targets()
        before = release_floors_of(current.signed) if current is not None else {}
        for line, floor in sorted(before.items()):
            if floors.get(line, 0) < floor:
                raise TargetsRejectedError(
                    f"release floors never go down ({line})",
                    code="release_floor_lowered",
                    expected=f">= {floor}",
                    got=floors.get(line),
                )

    @staticmethod
    def _check_signed_by_role(root: Root, role: str, md: Metadata[_Role]) -> None:
        if not signed_by_distinct_threshold(root, role, md):
            raise _reject(
                f"{role} metadata is not signed by a threshold of distinct {role} keys",
                expected=f"{root.roles[role].threshold} of {sorted(root.roles[role].keyids)}",
                got=sorted(md.signatures),
            )

    def _store_target(self, name: str, source: Path) -> None:
        dest = self.targets_dir / name
        if dest.exists():
            return
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp")
        shutil.copyfile(source, tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        tmp.replace(dest)
        fsync_dir(dest.parent)

    def _write_snapshot_and_timestamp(self, now: datetime, *, targets_meta: MetaFile | None) -> None:
        if (self.metadata_dir / "timestamp.json").exists():
            previous = self.snapshot().signed
            version = previous.version + 1
            meta = dict(previous.meta)
        else:
            version = 1
            meta = {}
        if targets_meta is not None:
            meta["targets.json"] = targets_meta
        snapshot = Snapshot(version=version, expires=now + SNAPSHOT_EXPIRY, meta=meta)
        md = Metadata(snapshot)
        md.sign(self._signers.snapshot)
        data = md.to_bytes()
        atomic_write_bytes(self.metadata_dir / f"{version}.snapshot.json", data)
        self._write_timestamp(
            now,
            MetaFile(version=version, length=len(data), hashes={"sha256": hashlib.sha256(data).hexdigest()}),
        )

    def _write_timestamp(self, now: datetime, snapshot_meta: MetaFile) -> None:
        path = self.metadata_dir / "timestamp.json"
        version = Metadata[Timestamp].from_bytes(path.read_bytes()).signed.version + 1 if path.exists() else 1
        md = Metadata(Timestamp(version=version, expires=now + TIMESTAMP_EXPIRY, snapshot_meta=snapshot_meta))
        md.sign(self._signers.timestamp)
        atomic_write_bytes(path, md.to_bytes())
