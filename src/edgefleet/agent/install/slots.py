"""A/B model slots on disk: content-addressed version directories and the pointers that pick one.

Layout under the agent's data dir, per model slot (``default``, ...):

    slots/<slot>/versions/<key>/manifest.json   the artifact manifest; <key> = sha256(canonical manifest)
    slots/<slot>/versions/<key>/files/...       the artifact's files, as listed in the manifest
    slots/<slot>/active                         pointer (JSON): the version serving now
    slots/<slot>/previous                       pointer: the last good version before it (rollback target)
    slots/<slot>/trial                          the version on trial since its switch (absent: none)
    slots/<slot>/withdrawn                      the version withdrawn without a previous (kill switch)
    slots/<slot>/refusals                       rejection counts per artifact id, and the attempts counted
    slots/<slot>/trash/                         versions being deleted (so a half-deleted one is never seen)
    staging/<slot>/<nonce>/                     an install being assembled; renamed into versions/ whole

A directory under ``versions/`` only appears by ``rename`` of a complete, fsynced staging directory, so it is
complete or absent. Pointer files change only by atomic replace (temp, fsync, rename, fsync dir). The switch
writes ``previous`` first and then replaces ``active``: the replace of ``active`` is the commit point, and a
crash between the two leaves ``previous == active``, which is still consistent (``drop_previous_if_active``
tidies it on start). A rollback replaces ``active`` and then removes ``previous``; a crash between the two
leaves the same harmless ``previous == active``.

Crash points (``crash(name)``, the harness's SIGKILL hook): ``write:<file>`` between the bytes of each durable
write; ``rollback:active_replaced`` between a rollback's two pointer writes; ``refusals:before`` /
``refusals:after`` around the write of a rejection count; ``gc:start`` (versions chosen, none moved),
``gc:moved`` (one renamed into ``trash/``, not yet deleted), ``gc:deleting`` (between the files of one
being deleted) and ``withdraw:marked`` (a withdrawal's marker written, ``active`` not yet removed).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edgefleet.agent.install.machine import Pointer, Withdrawn
from edgefleet.durable import fsync_dir
from edgefleet.protocol.canonical import canonical_json
from edgefleet.protocol.errors import EdgefleetError
from edgefleet.protocol.wire.base import read_document
from edgefleet.protocol.wire.manifest import ArtifactManifest

__all__ = ["Pointer", "SlotStore", "VersionCorruptError", "file_digest", "version_key"]

CrashHook = Callable[[str], None]
MAX_POINTER_BYTES = 64 * 1024
MAX_COUNTED_ATTEMPTS = 32
"""How many counted attempt ids ``refusals`` remembers (a recount after a restart is then a no-op)."""
_CHUNK_BYTES = 1 << 20


def _no_crash(_point: str) -> None:
    return None


class VersionCorruptError(EdgefleetError):
    """An installed version's files no longer match its manifest (or are missing)."""

    code = "version_corrupt"


def version_key(manifest: ArtifactManifest) -> str:
    """The content address of an artifact: sha256 of its canonical manifest (which pins every file)."""
    return hashlib.sha256(canonical_json(manifest.to_dict())).hexdigest()


def _sha256_of(path: Path) -> str | None:
    """SHA-256 of a file's bytes (hex), or ``None`` when it cannot be read."""
    try:
        return file_digest(path)[0]
    except OSError:
        return None


def file_digest(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def atomic_write(path: Path, data: bytes, crash: CrashHook = _no_crash) -> None:
    """Temp file, fsync, rename, fsync dir; ``crash("write:<name>")`` fires between the bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        half = len(data) // 2
        os.write(fd, data[:half])
        crash(f"write:{path.name}")
        os.write(fd, data[half:])
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def _remove_file(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        return
    fsync_dir(path.parent)


class SlotStore:
    def __init__(self, data_root: Path, slot: str, *, crash: CrashHook = _no_crash) -> None:
        self.slot = slot
        self.dir = Path(data_root) / "slots" / slot
        self.versions_dir = self.dir / "versions"
        self.staging_dir = Path(data_root) / "staging" / slot
        self._crash = crash

    # pointers
    @property
    def active_path(self) -> Path:
        return self.dir / "active"

    @property
    def previous_path(self) -> Path:
        return self.dir / "previous"

    def _read_json(self, path: Path) -> Any:
        try:
            with path.open("rb") as fh:
                raw = fh.read(MAX_POINTER_BYTES + 1)
        except FileNotFoundError:
            return None
        if len(raw) > MAX_POINTER_BYTES:
            return None
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None

    def _read_pointer(self, path: Path) -> Pointer | None:
        data = self._read_json(path)
        if not isinstance(data, dict):
            return None
        try:
            return Pointer(
                version=str(data["version"]),
                artifact_id=str(data["artifact_id"]),
                release_counter=int(data["release_counter"]),
                at=str(data["at"]),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def read_active(self) -> Pointer | None:
        return self._read_pointer(self.active_path)

    def read_previous(self) -> Pointer | None:
        return self._read_pointer(self.previous_path)

    def switch(self, new: Pointer, *, keep_previous: bool = False) -> None:
        """Make ``new`` active; the version active until now becomes ``previous`` (unless ``keep_previous``:
        replacing a version still on trial keeps the last good one as the rollback target). A withdrawal
        marker is cleared once ``new`` is active."""
        active = self.read_active()
        if not keep_previous and active is not None and active.version != new.version:
            atomic_write(self.previous_path, active.to_bytes(), self._crash)
        atomic_write(self.active_path, new.to_bytes(), self._crash)
        self.clear_withdrawn()

    # withdrawal (the kill switch with no previous version: ``install.withdraw``)
    @property
    def withdrawn_path(self) -> Path:
        return self.dir / "withdrawn"

    def read_withdrawn(self) -> Withdrawn | None:
        data = self._read_json(self.withdrawn_path)
        if not isinstance(data, dict):
            return None
        try:
            return Withdrawn(
                str(data["version"]), str(data["artifact_id"]), str(data["reason"]), str(data["at"])
            )
        except KeyError:
            return None

    def withdraw(self, active: Pointer, *, reason: str, at: str) -> None:
        """Stop serving ``active`` with nothing to return to: write the marker (what was withdrawn and why),
        then remove the ``active`` pointer. The version's files stay (kept from gc) for a re-enable. A crash
        between the two is finished by recovery (``withdraw.recovery_action``)."""
        marker = Withdrawn(active.version, active.artifact_id, reason, at)
        atomic_write(self.withdrawn_path, canonical_json(asdict(marker)), self._crash)
        self._crash("withdraw:marked")
        _remove_file(self.active_path)

    def clear_withdrawn(self) -> None:
        _remove_file(self.withdrawn_path)

    def rollback(self, *, at: str) -> Pointer:
        """Re-activate ``previous`` (the caller has verified it) and clear ``previous``."""
        previous = self.read_previous()
        if previous is None:
            raise VersionCorruptError("no previous version to roll back to", code="no_previous_version")
        restored = Pointer(previous.version, previous.artifact_id, previous.release_counter, at)
        atomic_write(self.active_path, restored.to_bytes(), self._crash)
        self._crash("rollback:active_replaced")
        _remove_file(self.previous_path)
        return restored

    def deactivate_previous(self) -> None:
        _remove_file(self.previous_path)

    def drop_previous_if_active(self) -> bool:
        """Remove ``previous`` when it names the active version (a switch or a rollback cut between its two
        pointer writes): it is no rollback target. True when it was removed."""
        active, previous = self.read_active(), self.read_previous()
        if active is None or previous is None or previous.version != active.version:
            return False
        _remove_file(self.previous_path)
        return True

    # trial and refusals (small JSON state files)
    @property
    def trial_path(self) -> Path:
        return self.dir / "trial"

    def read_trial(self) -> dict[str, Any] | None:
        data = self._read_json(self.trial_path)
        return data if isinstance(data, dict) else None

    def write_trial(self, trial: dict[str, Any]) -> None:
        atomic_write(self.trial_path, canonical_json(trial), self._crash)

    def clear_trial(self) -> None:
        _remove_file(self.trial_path)

    @property
    def refusals_path(self) -> Path:
        return self.dir / "refusals"

    def _read_refusals_file(self) -> tuple[dict[str, int], list[str]]:
        """(counts per artifact id, attempt ids already counted). Reads the flat ``{artifact: n}`` form
        written before attempts were recorded, too."""
        data = self._read_json(self.refusals_path)
        if not isinstance(data, dict):
            return {}, []
        counted: list[str] = []
        if isinstance(data.get("counts"), dict):
            raw_counted = data.get("counted")
            counted = [str(a) for a in raw_counted] if isinstance(raw_counted, list) else []
            data = data["counts"]
        counts = {str(k): v for k, v in data.items() if isinstance(v, int) and not isinstance(v, bool)}
        return counts, counted

    def read_refusals(self) -> dict[str, int]:
        """How often each artifact was rejected (failed load/health) or rolled back after its trial."""
        return self._read_refusals_file()[0]

    def count_rollback(self, artifact_id: str, *, attempt: str | None = None, max_entries: int = 100) -> int:
        """Count one rejection of ``artifact_id``; with ``attempt``, at most once per attempt (a recount of
        the same attempt after a restart changes nothing). Returns the artifact's count."""
        refusals, counted = self._read_refusals_file()
        if attempt is not None and attempt in counted:
            return refusals.get(artifact_id, 0)
        refusals[artifact_id] = refusals.get(artifact_id, 0) + 1
        if len(refusals) > max_entries:  # bounded: forget the least-refused entries
            for key in sorted(refusals, key=lambda k: refusals[k])[: len(refusals) - max_entries]:
                if key != artifact_id:
                    del refusals[key]
        if attempt is not None:
            counted = [*counted, attempt][-MAX_COUNTED_ATTEMPTS:]
        self._crash("refusals:before")
        body = canonical_json({"counts": refusals, "counted": counted})
        atomic_write(self.refusals_path, body, self._crash)
        self._crash("refusals:after")
        return refusals[artifact_id]

    # versions
    def version_dir(self, key: str) -> Path:
        return self.versions_dir / key

    def files_dir(self, key: str) -> Path:
        return self.version_dir(key) / "files"

    def has_version(self, key: str) -> bool:
        return (self.version_dir(key) / "manifest.json").is_file()

    def versions(self) -> list[str]:
        if not self.versions_dir.is_dir():
            return []
        return sorted(p.name for p in self.versions_dir.iterdir() if p.is_dir())

    def read_manifest(self, key: str) -> ArtifactManifest:
        """The installed version's manifest, or ``VersionCorruptError``. Its content address holds when the
        stored bytes hash to ``key`` (``install_staged`` wrote ``canonical_json`` of the manifest), or when
        the manifest as read does: a manifest stored with a field this agent does not know (a newer build,
        kept by an older agent's pydantic model) keeps its address, which the struct alone would lose."""
        path = self.version_dir(key) / "manifest.json"
        data = self._read_json(path)
        try:
            manifest = read_document(data, ArtifactManifest, kind="artifact manifest")
        except EdgefleetError as exc:
            raise VersionCorruptError(
                "installed manifest is unreadable", got=str(self.version_dir(key))
            ) from exc
        if version_key(manifest) != key and _sha256_of(path) != key:
            raise VersionCorruptError(
                "installed manifest does not match its content address",
                expected=key,
                got=version_key(manifest),
            )
        return manifest

    def verify(self, key: str) -> ArtifactManifest:
        """Re-hash every file of an installed version against its manifest. Raises ``VersionCorruptError``."""
        manifest = self.read_manifest(key)
        for entry in manifest.files:
            path = self.files_dir(key) / entry.path
            try:
                sha, size = file_digest(path)
            except OSError as exc:
                raise VersionCorruptError(
                    f"installed file {entry.path} is unreadable", code="version_file_missing", got=str(path)
                ) from exc
            if (sha, size) != (entry.sha256, entry.length):
                raise VersionCorruptError(
                    f"installed file {entry.path} changed",
                    expected={"sha256": entry.sha256, "length": entry.length},
                    got={"sha256": sha, "length": size},
                )
        return manifest

    def new_staging(self) -> Path:
        path = self.staging_dir / secrets.token_hex(8)
        (path / "files").mkdir(parents=True)
        return path

    def install_staged(self, staged: Path, manifest: ArtifactManifest) -> str:
        """Write the manifest, fsync everything, and rename the staging dir into ``versions/<key>``."""
        key = version_key(manifest)
        atomic_write(staged / "manifest.json", canonical_json(manifest.to_dict()), self._crash)
        for root, _dirs, files in os.walk(staged):
            for name in files:
                fd = os.open(Path(root) / name, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            fsync_dir(Path(root))
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        if self.has_version(key):
            try:
                self.verify(key)
            except VersionCorruptError:
                self._to_trash(key)  # a damaged copy of the same content: the fresh one replaces it
            else:
                shutil.rmtree(staged, ignore_errors=True)
                return key
        os.rename(staged, self.version_dir(key))
        fsync_dir(self.versions_dir)
        return key

    def clear_staging(self) -> None:
        shutil.rmtree(self.staging_dir, ignore_errors=True)
        shutil.rmtree(self.dir / "trash", ignore_errors=True)

    def gc(self, *, keep: set[str] | frozenset[str] = frozenset(), max_removals: int = 4) -> list[str]:
        """Delete up to ``max_removals`` versions that are neither active, previous, on trial nor kept.

        Oldest first. A version is renamed into ``trash/`` before it is deleted, so a crash mid-delete never
        leaves a partial directory under ``versions/``.
        """
        protected = set(keep)
        for pointer in (self.read_active(), self.read_previous(), self.read_withdrawn()):
            if pointer is not None:
                protected.add(pointer.version)
        trial = self.read_trial()
        if trial is not None:
            protected.add(str(trial.get("version")))
        candidates = [k for k in self.versions() if k not in protected]
        candidates.sort(key=lambda k: self.version_dir(k).stat().st_mtime)
        removed: list[str] = []
        if candidates[:max_removals]:
            self._crash("gc:start")
        for key in candidates[:max_removals]:
            self._to_trash(key)
            removed.append(key)
        return removed

    def _to_trash(self, key: str) -> None:
        """Rename a version into ``trash/`` (durably), then delete it file by file. A crash at any point
        leaves the version whole under ``versions/`` or (part of it) under ``trash/``, which
        ``clear_staging`` empties on start; never a partial directory under ``versions/``."""
        trash = self.dir / "trash"
        trash.mkdir(parents=True, exist_ok=True)
        target = trash / f"{key}.{secrets.token_hex(4)}"
        os.rename(self.version_dir(key), target)
        fsync_dir(self.versions_dir)
        self._crash("gc:moved")
        for root, dirs, files in os.walk(target, topdown=False):
            for name in files:
                with contextlib.suppress(OSError):
                    os.unlink(Path(root) / name)
                self._crash("gc:deleting")
            for name in dirs:
                with contextlib.suppress(OSError):
                    os.rmdir(Path(root) / name)
        with contextlib.suppress(OSError):
            os.rmdir(target)
