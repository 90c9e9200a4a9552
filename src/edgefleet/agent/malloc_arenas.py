"""glibc's malloc arenas, capped for the resident agent.

glibc gives each thread that allocates an arena of its own (up to eight per core) and keeps the pages of the
blocks freed in it. ``agent run`` has some ten threads (the sync loop, the uploader, the local endpoint, the
telemetry windows, the trial watchdog...), each allocating a little: with two arenas they share pages, and the
steady state holds ~1 MiB less (``docs/decisions.md``, "A lean agent, fifth pass"). Set before the threads
start; ``MALLOC_ARENA_MAX`` in the environment is an operator's choice and wins. Elsewhere than glibc (musl,
macOS) nothing is changed, and the returned line says so."""

from __future__ import annotations

import ctypes
import platform
from collections.abc import Mapping

__all__ = ["AGENT_MALLOC_ARENAS", "cap_malloc_arenas"]

AGENT_MALLOC_ARENAS = 2
M_ARENA_MAX = -8
"""glibc's ``mallopt`` parameter number for the arena cap (``malloc.h``)."""


def cap_malloc_arenas(environ: Mapping[str, str], max_arenas: int = AGENT_MALLOC_ARENAS) -> str:
    """Cap this process's malloc arenas at ``max_arenas``; returns what was done, for the start-up log."""
    if "MALLOC_ARENA_MAX" in environ:
        return f"malloc arenas: MALLOC_ARENA_MAX={environ['MALLOC_ARENA_MAX']} from the environment"
    if platform.libc_ver()[0] != "glibc":
        return "malloc arenas: not glibc, left as they are"
    try:
        done = ctypes.CDLL(None).mallopt(M_ARENA_MAX, max_arenas)
    except (OSError, AttributeError) as exc:
        return f"malloc arenas: left as they are ({exc})"
    return f"malloc arenas: at most {max_arenas}" if done == 1 else "malloc arenas: mallopt refused the cap"
