"""What both quickstart tests need: a pid check, and the trained model reused between local runs."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["alive", "reuse_cached_model"]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def reuse_cached_model(workdir: Path) -> None:
    """With ``EDGEFLEET_DEMO_CACHE`` naming a folder that holds a trained model, link it into ``workdir`` so
    the demo skips training (local runs; CI trains)."""
    cache = os.environ.get("EDGEFLEET_DEMO_CACHE")
    if cache and (Path(cache) / "model.onnx").exists():
        (workdir / "cache").mkdir(parents=True)
        (workdir / "cache" / "digits").symlink_to(cache)
