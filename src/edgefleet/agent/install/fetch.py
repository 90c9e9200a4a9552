"""Getting an assignment's manifest and files, verified.

An assignment names its artifact's manifest by TUF target (path, length, sha256): ``resolve`` turns it into
the manifest itself, parsed once (``ResolvedAssignment``); ``fetch`` places every file that manifest lists
into a staging directory. ``ArtifactFetcher`` is the interface the installer calls. ``LocalDirFetcher`` reads
a local directory of artifacts (``<root>/<artifact_id>/manifest.json`` and its files): tests, benches, and
devices fed by removable media. The TUF-backed fetcher (``agent.install.content``: verified, resumable
download through ``agent.install.download``) implements the same protocol.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from edgefleet.agent.install.faults import CrashHook, no_crash
from edgefleet.protocol.canonical import parse_json_bounded
from edgefleet.protocol.errors import NotFoundError
from edgefleet.protocol.limits import MAX_MANIFEST_BYTES
from edgefleet.protocol.names import MANIFEST_FILE, manifest_target_path
from edgefleet.protocol.wire.base import read_document
from edgefleet.protocol.wire.desired_state import Assignment, TargetRef
from edgefleet.protocol.wire.manifest import ArtifactManifest
from edgefleet.trust.errors import DiskFullError, HashMismatchError

__all__ = ["ArtifactFetcher", "LocalDirFetcher", "ResolvedAssignment", "manifest_from_bytes"]

_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class ResolvedAssignment:
    """An assignment with its manifest: the bytes its manifest target names, parsed once."""

    artifact_id: str
    manifest: ArtifactManifest
    target: TargetRef
    """The manifest's TUF target, as the director named it (and the fetcher verified)."""


class ArtifactFetcher(Protocol):
    def resolve(self, assignment: Assignment) -> ResolvedAssignment:
        """The assigned manifest: the bytes ``assignment.manifest`` names (same sha256 and length), parsed."""

    def fetch(self, assignment: ResolvedAssignment, staging_dir: Path) -> dict[str, Path]:
        """Place every file of ``assignment.manifest`` under ``staging_dir`` (same relative paths), each
        verified against the manifest's sha256 and length. Returns ``{manifest path: file}``."""


def manifest_from_bytes(raw: bytes, target: TargetRef) -> ArtifactManifest:
    """Parse manifest bytes already checked against ``target``; the target's path must be the manifest's own
    (``<model>/<version>/<class>/manifest.json``), so a name cannot borrow another artifact's manifest."""
    data = parse_json_bounded(raw, max_bytes=MAX_MANIFEST_BYTES, what="manifest")
    manifest = read_document(data, ArtifactManifest, kind="artifact manifest")
    own = manifest_target_path(manifest.model, manifest.version, manifest.hardware_class)
    if target.path != own:
        raise HashMismatchError(
            "the assigned manifest target is not this manifest's own path",
            code="manifest_path_mismatch",
            expected=own,
            got=target.path,
        )
    return manifest


def _disk_free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


class LocalDirFetcher:
    def __init__(
        self,
        root: Path,
        *,
        reserve_bytes: int = 0,
        free_bytes: Callable[[Path], int] = _disk_free_bytes,
        crash: CrashHook = no_crash,
    ) -> None:
        self._root = Path(root)
        self._reserve_bytes = reserve_bytes
        self._free_bytes = free_bytes
        self._crash = crash

    def resolve(self, assignment: Assignment) -> ResolvedAssignment:
        path = self._root / assignment.artifact_id / MANIFEST_FILE
        target = assignment.manifest
        try:
            with path.open("rb") as fh:
                raw = fh.read(target.length + 1)
        except FileNotFoundError as exc:
            raise NotFoundError(
                "artifact is not in the local artifact dir", code="artifact_missing", got=str(path)
            ) from exc
        got = {"sha256": hashlib.sha256(raw).hexdigest(), "length": len(raw)}
        if got != {"sha256": target.sha256, "length": target.length}:
            raise HashMismatchError(
                "the local manifest is not the assigned one",
                expected={"sha256": target.sha256, "length": target.length},
                got=got,
            )
        return ResolvedAssignment(assignment.artifact_id, manifest_from_bytes(raw, target), target)

    def fetch(self, assignment: ResolvedAssignment, staging_dir: Path) -> dict[str, Path]:
        manifest = assignment.manifest
        source = self._root / assignment.artifact_id
        if not source.is_dir():
            raise NotFoundError(
                "artifact is not in the local artifact dir", code="artifact_missing", got=str(source)
            )
        staging_dir.mkdir(parents=True, exist_ok=True)
        needed = manifest.total_bytes + self._reserve_bytes
        free = self._free_bytes(staging_dir)
        if free < needed:
            raise DiskFullError(
                "not enough free space to stage the artifact", expected=f">= {needed} bytes", got=free
            )
        out: dict[str, Path] = {}
        for entry in manifest.files:
            dest = staging_dir / entry.path
            dest.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            size = 0
            chunk_bytes = max(1, min(_CHUNK_BYTES, (entry.length + 1) // 2))  # >= 2 writes: a crash point
            try:
                with (source / entry.path).open("rb") as src, dest.open("wb") as dst:
                    while chunk := src.read(chunk_bytes):
                        dst.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
                        if size > entry.length:
                            break
                        dst.flush()
                        self._crash(f"write:{Path(entry.path).name}")
                    os.fsync(dst.fileno())
            except FileNotFoundError as exc:
                raise NotFoundError(
                    f"artifact file {entry.path} is missing",
                    code="artifact_missing",
                    got=str(source / entry.path),
                ) from exc
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise DiskFullError("disk full while staging", got=entry.path) from exc
                raise
            if (digest.hexdigest(), size) != (entry.sha256, entry.length):
                raise HashMismatchError(
                    f"artifact file {entry.path} does not match the manifest",
                    expected={"sha256": entry.sha256, "length": entry.length},
                    got={"sha256": digest.hexdigest(), "length": size},
                )
            out[entry.path] = dest
        return out
