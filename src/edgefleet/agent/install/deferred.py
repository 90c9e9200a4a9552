"""A content fetcher built on its first use.

``agent run`` recovers its slots and starts serving the active version before it imports the sync stack
(TUF, httpx, the signed channel): recovery and serving read only the slots on disk, and the active version's
files are hashed again when serving loads them, so nothing they do needs the network or TUF. The installer
is handed this stand-in; the real fetcher (``TufArtifactFetcher``) is built from ``factory`` the first time
an install, a probe or the sync loop asks for it (the agent builds it right after serving is up).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from edgefleet.agent.install.fetch import ArtifactFetcher, ResolvedAssignment
from edgefleet.protocol.desired_state import Assignment

__all__ = ["DeferredFetcher"]

F = TypeVar("F", bound=ArtifactFetcher)


class DeferredFetcher(Generic[F]):
    def __init__(self, factory: Callable[[], F]) -> None:
        self._factory = factory
        self._fetcher: F | None = None
        self._lock = threading.Lock()

    def get(self) -> F:
        """The real fetcher, built once (thread-safe)."""
        with self._lock:
            if self._fetcher is None:
                self._fetcher = self._factory()
            return self._fetcher

    @property
    def built(self) -> bool:
        return self._fetcher is not None

    @property
    def last_transfer(self) -> object:
        """The built fetcher's report of its last fetch (``None`` before one)."""
        return getattr(self._fetcher, "last_transfer", None)

    def resolve(self, assignment: Assignment) -> ResolvedAssignment:
        return self.get().resolve(assignment)

    def fetch(self, assignment: ResolvedAssignment, staging_dir: Path) -> dict[str, Path]:
        return self.get().fetch(assignment, staging_dir)
