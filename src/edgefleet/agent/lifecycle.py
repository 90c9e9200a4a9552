"""Why the agent (re)started: a power cut, a clean restart, or a crash of the agent process.

``<data dir>/agent-run.json`` records the kernel's boot id (``/proc/sys/kernel/random/boot_id``, new at every
boot) when the agent starts, and ``clean: true`` when it stops on SIGTERM/SIGINT. The next start compares:

* another boot id: the machine rebooted or lost power (``power_cut``);
* same boot, marked clean: an operator or the service manager restarted the agent (``clean_restart``);
* same boot, not marked clean: the agent process died (``agent_crash``: SIGKILL, the OOM killer, a crash);
* no record: ``first_start``; no boot id available: ``unknown``.

The installer uses it to decide whether a restart during a trial counts against the version on trial
(``install.machine.restart_counts``).
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgefleet.agent.install.machine import RestartCause, restart_cause
from edgefleet.durable import atomic_write_bytes

__all__ = ["BOOT_ID_PATH", "RUN_FILE", "RunMarker", "read_boot_id"]

log = logging.getLogger("edgefleet.agent")
BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
RUN_FILE = "agent-run.json"
MAX_RUN_FILE_BYTES = 4096


def read_boot_id(path: Path = BOOT_ID_PATH) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()[:64] or None
    except (OSError, UnicodeDecodeError):
        return None


class RunMarker:
    def __init__(self, data_root: Path, *, boot_id: str | None = None) -> None:
        self.path = Path(data_root) / RUN_FILE
        self.boot_id = boot_id if boot_id is not None else read_boot_id()

    def _read(self) -> dict[str, Any] | None:
        try:
            with self.path.open("rb") as fh:
                raw = fh.read(MAX_RUN_FILE_BYTES + 1)
            data = json.loads(raw) if len(raw) <= MAX_RUN_FILE_BYTES else None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def _write(self, *, clean: bool) -> None:
        body = {
            "boot_id": self.boot_id,
            "pid": os.getpid(),
            "clean": clean,
            "at": datetime.now(timezone.utc).isoformat(),
        }
        atomic_write_bytes(self.path, json.dumps(body, sort_keys=True).encode())

    def begin(self) -> RestartCause:
        """Judge how the previous run ended, then record this one as running (not clean)."""
        cause = restart_cause(self._read(), self.boot_id)
        self._write(clean=False)
        log.info("event=agent_start cause=%s", cause)
        return cause

    def end_clean(self) -> None:
        """The agent stops in order (SIGTERM/SIGINT, everything closed)."""
        self._write(clean=True)
