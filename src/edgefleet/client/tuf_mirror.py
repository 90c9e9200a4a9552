"""A plain-file copy of the control plane's image repository, for any static host or CDN.

``export_repository`` writes the layout python-tuf's client asks for with consistent snapshots::

    DIR/metadata/N.root.json, DIR/metadata/root.json     every root version, and the newest
    DIR/metadata/N.targets.json, DIR/metadata/N.snapshot.json
    DIR/metadata/timestamp.json
    DIR/targets/<dir>/<sha256>.<name>                     artifact files, named by their hash

Devices enrolled with ``--content-url https://cdn.example/edgefleet`` (or a server whose
``content_base_url`` names the host) fetch ``<url>/metadata/...`` and ``<url>/targets/...`` there and never
ask the API for content. The host is not trusted: devices verify every file against their pinned root.

The copy is incremental and ordered for readers that arrive in the middle of it: immutable files (versioned
metadata, hash-named targets) already present are kept and never rewritten, new ones are written first
(targets, then targets metadata, then snapshot, then roots), and ``timestamp.json`` last, each atomically
(temp, fsync, rename), so a host never serves a timestamp that points at a missing file. Each file is checked
on the way in against what the metadata above it says (length and sha256); the copy is a transport, the
devices still judge the signatures. Old versions are never deleted: a cache may still hold an older
timestamp that names them. ``timestamp.json`` expires (a day; the server re-signs it every 12 hours), so run
the export on a timer (docs/server.md, Content off the API).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from edgefleet.client.errors import IntegrityError
from edgefleet.durable import atomic_write_bytes
from edgefleet.protocol.document import is_safe_relpath
from edgefleet.protocol.errors import InvalidDocumentError, NotFoundError

__all__ = ["ExportResult", "RepositorySource", "export_repository", "target_file_name"]

MAX_ROOT_VERSIONS = 10_000
"""A bound on the root chain walked (roots are rotated a few times in a repository's life)."""


class RepositorySource(Protocol):
    """What the export reads: the control plane's ``/tuf`` (``EdgefleetClient`` satisfies it)."""

    def tuf_metadata(self, name: str) -> bytes: ...

    def download_tuf_target(self, storage_name: str, dest: Path, *, sha256: str, length: int) -> Path: ...


@dataclass
class ExportResult:
    root_version: int = 0
    targets_version: int = 0
    snapshot_version: int = 0
    written: list[str] = field(default_factory=list)
    """Paths (relative to DIR) written by this run, in the order they were written."""
    kept: int = 0
    """Immutable files already present and left as they were."""


def target_file_name(path: str, sha256: str) -> str:
    """``a/b/model.onnx`` -> ``a/b/<sha256>.model.onnx``: the name python-tuf asks for."""
    dirname, sep, basename = path.rpartition("/")
    return f"{dirname}{sep}{sha256}.{basename}"


def _signed(raw: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
        signed = doc["signed"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidDocumentError(
            f"{what} is not TUF metadata", code="invalid_tuf_metadata", expected="a signed document", got=what
        ) from exc
    if not isinstance(signed, dict):
        raise InvalidDocumentError(f"{what} is not TUF metadata", code="invalid_tuf_metadata", got=what)
    return signed


def _check(raw: bytes, meta: dict[str, Any], what: str) -> None:
    """The bytes match what the metadata above says of them (length and sha256, where it says)."""
    length = meta.get("length")
    if length is not None and len(raw) != length:
        raise IntegrityError(
            f"{what} has another length than its metadata says", expected=length, got=len(raw)
        )
    sha256 = (meta.get("hashes") or {}).get("sha256")
    if sha256 is not None and hashlib.sha256(raw).hexdigest() != sha256:
        raise IntegrityError(
            f"{what} does not match its metadata", expected=sha256, got=hashlib.sha256(raw).hexdigest()
        )


def _version(meta: dict[str, Any], what: str) -> int:
    version = meta.get("version")
    if not isinstance(version, int) or version < 1:
        raise InvalidDocumentError(
            f"{what} names no version", code="invalid_tuf_metadata", expected="a version >= 1", got=version
        )
    return version


def export_repository(
    source: RepositorySource,
    directory: Path,
    *,
    on_file: Callable[[str], None] | None = None,
) -> ExportResult:
    """Copy the current repository into ``directory`` (see the module docstring). Returns what was done."""
    directory = Path(directory)
    metadata_dir = directory / "metadata"
    result = ExportResult()

    def put(relpath: str, data: bytes) -> None:
        atomic_write_bytes(directory / relpath, data, mode=0o644)
        result.written.append(relpath)
        if on_file is not None:
            on_file(relpath)

    timestamp_raw = source.tuf_metadata("timestamp.json")
    snapshot_meta = (_signed(timestamp_raw, "timestamp.json").get("meta") or {}).get("snapshot.json") or {}
    result.snapshot_version = _version(snapshot_meta, "timestamp.json's snapshot")
    snapshot_name = f"{result.snapshot_version}.snapshot.json"
    snapshot_raw = source.tuf_metadata(snapshot_name)
    _check(snapshot_raw, snapshot_meta, snapshot_name)
    targets_meta = (_signed(snapshot_raw, snapshot_name).get("meta") or {}).get("targets.json")
    targets_name: str | None = None
    targets_raw = b""
    if targets_meta is not None:  # nothing published yet: no targets metadata
        result.targets_version = _version(targets_meta, f"{snapshot_name}'s targets")
        targets_name = f"{result.targets_version}.targets.json"
        targets_raw = source.tuf_metadata(targets_name)
        _check(targets_raw, targets_meta, targets_name)
        for path, info in sorted((_signed(targets_raw, targets_name).get("targets") or {}).items()):
            sha256 = (info.get("hashes") or {}).get("sha256")
            length = info.get("length")
            if not isinstance(sha256, str) or not isinstance(length, int) or not is_safe_relpath(path):
                raise InvalidDocumentError(
                    "a target entry lacks a safe path, a sha256 or a length",
                    code="invalid_tuf_metadata",
                    got=path,
                )
            relpath = f"targets/{target_file_name(path, sha256)}"
            dest = directory / relpath
            if dest.exists() and dest.stat().st_size == length:
                result.kept += 1  # hash-named and checked when written: immutable
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            source.download_tuf_target(target_file_name(path, sha256), dest, sha256=sha256, length=length)
            result.written.append(relpath)
            if on_file is not None:
                on_file(relpath)

    def put_immutable(name: str, data: bytes) -> None:
        if (metadata_dir / name).exists():
            result.kept += 1
            return
        put(f"metadata/{name}", data)

    if targets_name is not None:
        put_immutable(targets_name, targets_raw)
    put_immutable(snapshot_name, snapshot_raw)
    newest_root = b""
    for version in range(1, MAX_ROOT_VERSIONS + 1):
        name = f"{version}.root.json"
        if (metadata_dir / name).exists():
            newest_root = (metadata_dir / name).read_bytes()
            result.root_version = version
            result.kept += 1
            continue
        try:
            raw = source.tuf_metadata(name)
        except NotFoundError:
            break
        if _version(_signed(raw, name), name) != version:
            raise InvalidDocumentError(
                f"{name} carries another version", code="invalid_tuf_metadata", expected=version, got=name
            )
        put(f"metadata/{name}", raw)
        newest_root, result.root_version = raw, version
    if newest_root and (
        not (metadata_dir / "root.json").exists() or (metadata_dir / "root.json").read_bytes() != newest_root
    ):
        put("metadata/root.json", newest_root)
    put("metadata/timestamp.json", timestamp_raw)  # last: everything it names is in place
    return result
