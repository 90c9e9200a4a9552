"""glibc's malloc, tuned for the resident agent: its arenas capped, its free pages returned.

glibc gives each thread that allocates an arena of its own (up to eight per core) and keeps the pages of the
blocks freed in it. ``agent run`` has some ten threads (the sync loop, the uploader, the local endpoint, the
telemetry windows, the trial watchdog...), each allocating a little: with two arenas they share pages, and the
steady state holds ~1 MiB less (``docs/decisions.md``, "A lean agent, fifth pass"). Set before the threads
start; ``MALLOC_ARENA_MAX`` in the environment is an operator's choice and wins. Elsewhere than glibc (musl,
macOS) nothing is changed, and the returned line says so.

``HeapTrim`` gives back, once a minute, the pages of the heap that hold only freed blocks (``malloc_trim``):
start-up (an interpreter compiling bytecode it could not read from a cache) and an install (a candidate
checked, a manifest parsed) free far more than the steady agent holds, and glibc otherwise keeps what lies
below the heap's top. One call walks the heap (well under a millisecond on the build host)."""

from __future__ import annotations

import ctypes
import platform
from collections.abc import Callable, Mapping

__all__ = ["AGENT_MALLOC_ARENAS", "TRIM_INTERVAL_S", "HeapTrim", "cap_malloc_arenas"]

AGENT_MALLOC_ARENAS = 2
M_ARENA_MAX = -8
"""glibc's ``mallopt`` parameter number for the arena cap (``malloc.h``)."""
TRIM_INTERVAL_S = 60.0


def cap_malloc_arenas(environ: Mapping[str, str], max_arenas: int = AGENT_MALLOC_ARENAS) -> str:
    """Cap this process's malloc arenas at ``max_arenas``; returns what was done, for the start-up log."""
    if "MALLOC_ARENA_MAX" in environ:
        return f"malloc arenas: MALLOC_ARENA_MAX={environ['MALLOC_ARENA_MAX']} from the environment"
    try:
        libc = _glibc()
        if libc is None:
            return "malloc arenas: not glibc, left as they are"
        done = libc.mallopt(M_ARENA_MAX, max_arenas)
    except (OSError, AttributeError) as exc:
        return f"malloc arenas: left as they are ({exc})"
    return f"malloc arenas: at most {max_arenas}" if done == 1 else "malloc arenas: mallopt refused the cap"


class HeapTrim:
    """``malloc_trim(0)`` at most every ``interval_s``, on glibc; elsewhere ``tick`` does nothing."""

    def __init__(
        self, now_s: float, *, interval_s: float = TRIM_INTERVAL_S, trim: Callable[[int], int] | None = None
    ) -> None:
        self.interval_s = interval_s
        self._trim = trim if trim is not None else _glibc_trim()
        self._last_s = now_s - interval_s  # the first tick trims: start-up has just freed its garbage
        self.trims = 0

    @property
    def available(self) -> bool:
        return self._trim is not None

    def tick(self, now_s: float) -> bool:
        """Trim when ``interval_s`` has passed since the last trim; True when it did."""
        if self._trim is None or now_s - self._last_s < self.interval_s:
            return False
        self._last_s = now_s
        self._trim(0)
        self.trims += 1
        return True


def _glibc() -> ctypes.CDLL | None:
    """This process's C library when it is glibc, ``None`` elsewhere (``OSError`` if it cannot be opened)."""
    return ctypes.CDLL(None) if platform.libc_ver()[0] == "glibc" else None


def _glibc_trim() -> Callable[[int], int] | None:
    try:
        libc = _glibc()
        trim: Callable[[int], int] | None = None if libc is None else libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return trim
