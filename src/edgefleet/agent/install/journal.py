"""The install journal: one durable line per step of an install attempt, replayed on start.

``journal/<slot>.jsonl`` holds JSON lines ``{"attempt", "artifact_id", "version", "step", "event", ...}``.
Each append is written, fsynced and only then acted upon. A line torn by a power cut (no trailing newline, or
not JSON) is ignored on read and cut off before the next append. The file is compacted (atomically) when it
outgrows ``max_bytes``, keeping the latest attempts.

Replay is a pure function of the records and the slot's pointers (``attempt_outcome``): the journal says what
was attempted, the ``active`` pointer says what actually happened.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgefleet.agent.install.replay import STEPS, TERMINAL_EVENTS, Attempt, last_attempt
from edgefleet.durable import atomic_write_bytes, fsync_dir

__all__ = ["STEPS", "TERMINAL_EVENTS", "Attempt", "Journal", "last_attempt"]

MAX_JOURNAL_BYTES = 256 * 1024
MAX_LINE_BYTES = 8 * 1024

CrashHook = Callable[[str], None]


def _no_crash(_point: str) -> None:
    return None


class Journal:
    def __init__(
        self, path: Path, *, max_bytes: int = MAX_JOURNAL_BYTES, crash: CrashHook = _no_crash
    ) -> None:
        self.path = path
        self._max_bytes = max_bytes
        self._crash = crash

    def read(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as fh:
                raw = fh.read(self._max_bytes * 2 + MAX_LINE_BYTES)
        except FileNotFoundError:
            return []
        records: list[dict[str, Any]] = []
        for line in raw.split(b"\n")[:-1]:  # the last element is "" or a torn line
            try:
                rec = json.loads(line)
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue
            if isinstance(rec, dict):
                records.append(rec)
        return records

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, sort_keys=True, separators=(",", ":")).encode() + b"\n"
        if len(line) > MAX_LINE_BYTES:
            raise ValueError(f"journal record too large: {len(line)} bytes")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        self._repair_torn_tail()
        if self.path.exists() and self.path.stat().st_size + len(line) > self._max_bytes:
            self._compact()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            half = len(line) // 2
            os.write(fd, line[:half])
            self._crash("write:journal")
            os.write(fd, line[half:])
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            fsync_dir(self.path.parent)

    def _repair_torn_tail(self) -> None:
        """Cut a line left without its newline by a crash, so the next record starts on its own line."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size == 0:
            return
        with self.path.open("rb+") as fh:
            fh.seek(size - 1)
            if fh.read(1) == b"\n":
                return
            fh.seek(0)
            content = fh.read()
            keep = content.rfind(b"\n") + 1
            fh.truncate(keep)
            fh.flush()
            os.fsync(fh.fileno())

    def _compact(self) -> None:
        """Keep the newest half of the records (whole attempts), atomically."""
        records = self.read()
        begins = [i for i, r in enumerate(records) if r.get("event") == "begin"]
        cut = 0
        for index in begins:
            tail = records[index:]
            size = sum(len(json.dumps(r)) + 1 for r in tail)
            if size <= self._max_bytes // 2:
                cut = index
                break
        else:
            cut = begins[-1] if begins else len(records)
        body = b"".join(
            json.dumps(r, sort_keys=True, separators=(",", ":")).encode() + b"\n" for r in records[cut:]
        )
        atomic_write_bytes(self.path, body)
