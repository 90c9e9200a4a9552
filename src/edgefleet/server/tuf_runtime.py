"""The server's image repository (ARCHITECTURE 3.2): located, created in dev mode, kept fresh.

Layout under the data dir: ``keys/`` (online keys: snapshot, timestamp, director; in dev mode also the
offline ones, with a warning) and ``tuf/`` (the static repository). Outside dev mode the operator creates
both with ``edgefleet keys init DIR --repo DIR`` and moves the offline keys (root, release) off the server.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from edgefleet.protocol.canonical import parse_json_bounded
from edgefleet.protocol.desired_state import TargetHashes, TargetRef
from edgefleet.server.settings import Settings
from edgefleet.trust.keys import init_keys, load_signer
from edgefleet.trust.repository import MAX_METADATA_BYTES, ImageRepository, OnlineSigners

__all__ = ["OFFLINE_KEY_PATTERNS", "TufRuntime", "keys_dir", "offline_keys_in", "tuf_dir"]

log = logging.getLogger("edgefleet.server.tuf")


def keys_dir(settings: Settings) -> Path:
    return settings.data_dir / "keys"


def tuf_dir(settings: Settings) -> Path:
    return settings.data_dir / "tuf"


OFFLINE_KEY_PATTERNS = ("root-*.key", "release.key")
"""Private keys that belong offline (edgefleet.trust.keys): the root keys and the model-release key."""


def offline_keys_in(keys: Path) -> list[str]:
    """Offline private keys found under ``keys`` (also in retired-root folders), relative paths, sorted."""
    if not keys.is_dir():
        return []
    found = {p for pattern in OFFLINE_KEY_PATTERNS for p in keys.rglob(pattern) if p.is_file()}
    return sorted(str(p.relative_to(keys)) for p in found)


@dataclass
class TufRuntime:
    """``repo`` is ``None`` when no repository is configured: content trust is then unavailable and
    devices refuse every assignment (they cannot verify it)."""

    repo: ImageRepository | None
    _signed: tuple[bytes, dict[str, TargetRef]] | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, *, now: datetime) -> TufRuntime:
        keys, repo_dir = keys_dir(settings), tuf_dir(settings)
        if not settings.dev:
            offline = offline_keys_in(keys)
            if offline:
                log.warning(
                    "event=offline_keys_on_server dir=%s files=%s note=move root and release keys off the "
                    "server (docs/security.md): whoever reads them can sign any model for every device",
                    keys,
                    ",".join(offline),
                )
        if not (repo_dir / "metadata" / "root.json").exists():
            if not settings.dev:
                log.warning("event=tuf_disabled reason=no_repository dir=%s", repo_dir)
                return cls(repo=None)
            if not (keys / "root.json").exists():
                log.warning("event=dev_keys_created dir=%s note=demo keys are not production keys", keys)
                init_keys(keys, now=now)
            ImageRepository.create(repo_dir, (keys / "root.json").read_bytes(), _signers(keys), now=now)
        return cls(repo=ImageRepository(repo_dir, _signers(keys)))

    def root_document(self) -> dict[str, Any] | None:
        """The newest root, as JSON: what a device pins at enrollment."""
        if self.repo is None:
            return None
        raw = self.repo.metadata_path("root.json").read_bytes()
        return dict(parse_json_bounded(raw, max_bytes=MAX_METADATA_BYTES, what="root.json"))

    def signed_target(self, path: str) -> TargetRef | None:
        """The target at ``path`` in the current signed targets metadata (its length and sha256), or None.

        The targets are read again only when the repository wrote a new ``timestamp.json`` (every publish
        does; compared by content, a few hundred bytes, not by mtime, which two quick writes can share);
        between two, a look-up is a dict access (the director asks once per assignment it issues)."""
        if self.repo is None:
            return None
        try:
            stamp = self.repo.metadata_path("timestamp.json").read_bytes()
        except FileNotFoundError:
            return None
        cached = self._signed
        if cached is None or cached[0] != stamp:
            targets = self.repo.targets()
            index = {}
            if targets is not None:
                for target_path, info in targets.signed.targets.items():
                    sha256 = info.hashes.get("sha256")
                    if sha256 is not None:
                        index[target_path] = TargetRef(
                            path=target_path, length=info.length, hashes=TargetHashes(sha256=sha256)
                        )
            cached = self._signed = (stamp, index)
        return cached[1].get(path)

    def refresh(self, now: datetime) -> bool:
        """Re-sign timestamp (and snapshot) before they expire; True when something was re-signed."""
        return False if self.repo is None else self.repo.maybe_refresh_timestamp(now)


def _signers(keys: Path) -> OnlineSigners:
    return OnlineSigners(load_signer(keys / "snapshot.key"), load_signer(keys / "timestamp.key"))
