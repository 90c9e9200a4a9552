"""Verified manifests kept content-addressed under ``<data dir>/manifests/<sha256>.json``.

A manifest is stored here only after the TUF fetcher verified it (target in signed metadata, bytes hashed
on the way in); reading one hashes it again, so a damaged file is a miss, never a wrong manifest. A poll
that changes nothing for a slot therefore resolves its assignment without TUF, the network or the fetch
child: the agent reads this cache in-process before it starts a child (``agent.install.child_fetcher``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from edgefleet.protocol.wire.desired_state import TargetRef

__all__ = ["MAX_CACHED_MANIFESTS", "ManifestCache"]

MAX_CACHED_MANIFESTS = 64


class ManifestCache:
    def __init__(self, data_root: Path) -> None:
        self.directory = Path(data_root) / "manifests"

    def read(self, target: TargetRef) -> bytes | None:
        """The cached bytes of ``target`` when they still hash to it; a damaged file is removed (a miss)."""
        path = self.directory / f"{target.sha256}.json"
        try:
            with path.open("rb") as fh:
                raw = fh.read(target.length + 1)
        except FileNotFoundError:
            return None
        if len(raw) != target.length or hashlib.sha256(raw).hexdigest() != target.sha256:
            path.unlink(missing_ok=True)  # damaged: fetch it again through TUF
            return None
        return raw

    def keep(self, verified: Path, target: TargetRef) -> None:
        """Move a verified download of ``target`` into the cache; keep the ``MAX_CACHED_MANIFESTS`` newest
        (a miss only costs a download)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        os.replace(verified, self.directory / f"{target.sha256}.json")
        cached = sorted(self.directory.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        for path in cached[MAX_CACHED_MANIFESTS:]:
            path.unlink(missing_ok=True)
