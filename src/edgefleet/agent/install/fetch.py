"""Getting an assignment's files into a staging directory, verified.

``ArtifactFetcher`` is the interface the installer calls. ``LocalDirFetcher`` copies from a local directory
of artifacts (``<root>/<artifact_id>/<file>``): tests, benches, and devices fed by removable media. The
TUF-backed fetcher (verified, resumable download through ``agent.install.download``) implements the
same protocol.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from edgefleet.agent.install.faults import CrashHook, no_crash
from edgefleet.protocol.desired_state import Assignment
from edgefleet.protocol.errors import NotFoundError
from edgefleet.trust.errors import DiskFullError, HashMismatchError

__all__ = ["ArtifactFetcher", "LocalDirFetcher"]

_CHUNK_BYTES = 1 << 20


class ArtifactFetcher(Protocol):
    def fetch(self, assignment: Assignment, staging_dir: Path) -> dict[str, Path]:
        """Place every file of ``assignment.manifest`` under ``staging_dir`` (same relative paths), each
        verified against the manifest's sha256 and length. Returns ``{manifest path: file}``."""


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

    def fetch(self, assignment: Assignment, staging_dir: Path) -> dict[str, Path]:
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
