"""A deliberate fault hook for the crash harness: die by SIGKILL at a named point of an install.

Set ``EDGEFLEET_FAULT_CRASH_AT`` to a point name and the agent kills itself there, exactly like a power cut
(no ``finally``, no flush). Points: ``before:<step>`` / ``after:<step>`` for each journaled step;
``write:<file name>`` between the bytes of a durable write (``active``, ``previous``, ``trial``, ``journal``,
``refusals``, ``manifest.json``, or an artifact file such as ``model.onnx`` while it is copied); inside a
rollback ``rollback:start``, ``rollback:journaled``, ``rollback:active_replaced``,
``rollback:previous_removed``, ``rollback:end``; around a rejection count ``refusals:before`` /
``refusals:after``; inside the garbage collector ``gc:start``, ``gc:moved``, ``gc:deleting``; while a file is
rebuilt from a delta, ``delta:<file name>`` after each piece written to its partial file (TUF fetcher).
``<point>#<n>`` dies at the n-th time the point is reached (default: the first). Unset: no effect.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Mapping

__all__ = ["CRASH_ENV_VAR", "CrashHook", "crash_hook_from_env", "no_crash"]

CRASH_ENV_VAR = "EDGEFLEET_FAULT_CRASH_AT"
CrashHook = Callable[[str], None]


def no_crash(_point: str) -> None:
    return None


def crash_hook_from_env(environ: Mapping[str, str] | None = None) -> CrashHook:
    spec = (environ if environ is not None else os.environ).get(CRASH_ENV_VAR, "")
    if not spec:
        return no_crash
    point, _, nth = spec.partition("#")
    remaining = [int(nth) if nth.isdigit() and int(nth) > 0 else 1]

    def crash(name: str) -> None:
        if name == point:
            remaining[0] -= 1
            if remaining[0] == 0:
                os.kill(os.getpid(), signal.SIGKILL)

    return crash
