"""The value range of each float input that the serving guard accepts, recorded from the calibration set.

A working sensor sends values like those the model was calibrated on; the range is the calibration set's
``[min, max]`` widened by ``margin`` x its span on each side (a constant input: by ``margin`` x max(|v|, 1)),
so ordinary variation passes and a stuck, saturated or wildly wrong sensor does not.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgefleet.optimize.dataset import Dataset

__all__ = ["input_ranges"]


def input_ranges(data: Dataset, *, margin: float) -> dict[str, dict[str, Any]]:
    """Pure: ``{input name: {"min", "max"}}`` for every float input of ``data``."""
    out: dict[str, dict[str, Any]] = {}
    for name, array in sorted(data.arrays.items()):
        if not np.issubdtype(array.dtype, np.floating) or array.size == 0:
            continue
        low, high = float(array.min()), float(array.max())
        span = high - low or max(abs(high), 1.0)
        info = np.finfo(array.dtype)
        out[name] = {
            "min": max(low - margin * span, float(info.min)),
            "max": min(high + margin * span, float(info.max)),
        }
    return out
