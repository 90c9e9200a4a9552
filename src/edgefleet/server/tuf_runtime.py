"""The server's image repository (ARCHITECTURE 3.2): located, created in dev mode, kept fresh.

Layout under the data dir: ``keys/`` (online keys: snapshot, timestamp, director; in dev mode also the
offline ones, with a warning) and ``tuf/`` (the static repository). Outside dev mode the operator creates
both with ``edgefleet keys init DIR --repo DIR`` and moves the offline keys (root, release) off the server.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from edgefleet.protocol.canonical import parse_json_bounded
from edgefleet.server.settings import Settings
from edgefleet.trust.keys import init_keys, load_signer
from edgefleet.trust.repository import MAX_METADATA_BYTES, ImageRepository, OnlineSigners

__all__ = ["TufRuntime", "keys_dir", "tuf_dir"]

log = logging.getLogger("edgefleet.server.tuf")


def keys_dir(settings: Settings) -> Path:
    return settings.data_dir / "keys"


def tuf_dir(settings: Settings) -> Path:
    return settings.data_dir / "tuf"


@dataclass
class TufRuntime:
    """``repo`` is ``None`` when no repository is configured: content trust is then unavailable and
    devices refuse every assignment (they cannot verify it)."""

    repo: ImageRepository | None

    @classmethod
    def from_settings(cls, settings: Settings, *, now: datetime) -> TufRuntime:
        keys, repo_dir = keys_dir(settings), tuf_dir(settings)
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

    def refresh(self, now: datetime) -> bool:
        """Re-sign timestamp (and snapshot) before they expire; True when something was re-signed."""
        return False if self.repo is None else self.repo.maybe_refresh_timestamp(now)


def _signers(keys: Path) -> OnlineSigners:
    return OnlineSigners(load_signer(keys / "snapshot.key"), load_signer(keys / "timestamp.key"))
