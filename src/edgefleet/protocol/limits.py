"""Size bounds of the wire documents, shared by the pydantic models and the agent's structs."""

from __future__ import annotations

__all__ = ["MAX_DESIRED_STATE_BYTES", "MAX_HOST_TEXT_CHARS", "MAX_MANIFEST_BYTES", "MAX_REPORT_BYTES"]

MAX_MANIFEST_BYTES = 1_000_000
MAX_DESIRED_STATE_BYTES = 2_000_000
MAX_REPORT_BYTES = 64_000
MAX_HOST_TEXT_CHARS = 128
"""Longest OS/CPU text a report carries (the agent clips to it; the server refuses longer)."""
