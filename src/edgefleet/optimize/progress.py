"""The build's progress bars: on stderr, only when it is a terminal and progress was asked for."""

from __future__ import annotations

import sys

from tqdm import tqdm

from edgefleet.optimize.config import BuildConfig

__all__ = ["progress_bar"]


def progress_bar(config: BuildConfig, total: int, desc: str) -> tqdm:
    return tqdm(total=total, desc=desc, disable=not (config.progress and sys.stderr.isatty()), leave=False)
