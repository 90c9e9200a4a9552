"""The serving status file: what ``edgefleet agent status`` shows about the serving mode, offline.

Written atomically (temp, fsync, rename, fsync dir) on every rung change and swap; read bounded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgefleet.durable import atomic_write_bytes

__all__ = ["MAX_STATUS_BYTES", "STATUS_FILE", "read_status", "write_status"]

STATUS_FILE = "serving.json"
MAX_STATUS_BYTES = 64 * 1024


def write_status(path: Path, status: dict[str, Any]) -> None:
    data = json.dumps(status, sort_keys=True, default=str).encode("utf-8")
    atomic_write_bytes(Path(path), data if len(data) <= MAX_STATUS_BYTES else b'{"truncated": true}')


def read_status(path: Path) -> dict[str, Any] | None:
    """The last status written, or ``None`` when absent or unreadable."""
    try:
        with Path(path).open("rb") as fh:
            raw = fh.read(MAX_STATUS_BYTES + 1)
    except OSError:
        return None
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None
