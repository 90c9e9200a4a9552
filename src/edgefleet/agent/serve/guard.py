"""The input guard: a request whose values no working sensor produces is refused before the model runs.

Pure. Per float input: every value finite (``input_not_finite``) and, when the manifest records a range
from the calibration set, inside it (``input_out_of_range``). Both come from one ``min``/``max`` pass per
input (NaN propagates through both, infinity is out of any range); the slower element-wise look that names
what is wrong runs only on the refused request. Shapes, dtypes and names are checked before, by
``validate.validate_inputs``. Every refusal is an input fault (``protocol.telemetry.error_kind``): counted
apart in telemetry, never a model error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from edgefleet.agent.serve.errors import InputFaultError
from edgefleet.protocol.wire.manifest import InputRange, Signature

__all__ = ["InputGuard", "guard_inputs"]

_MIN = np.minimum.reduce  # the ufuncs themselves: ndarray.min/max add ~1 us of dispatch per call
_MAX = np.maximum.reduce


class InputGuard:
    """Which inputs to look at and their bounds, derived once per loaded artifact."""

    __slots__ = ("checks",)

    def __init__(self, signature: Signature, ranges: Mapping[str, InputRange] | None = None) -> None:
        ranges = ranges or {}
        checks: list[tuple[str, Any, Any, bool]] = []
        for spec in signature.inputs:
            if not spec.dtype.startswith("float"):
                continue
            bound = ranges.get(spec.name)
            dtype = np.dtype(spec.dtype)
            largest = float(np.finfo(dtype).max)  # no range: every finite value is inside, infinity is not
            lo = max(bound.min, -largest) if bound is not None else -largest
            hi = min(bound.max, largest) if bound is not None else largest
            # bounds in the input's own dtype: compared with its min/max without a cast on the hot path
            checks.append((spec.name, dtype.type(lo), dtype.type(hi), bound is not None))
        self.checks: tuple[tuple[str, Any, Any, bool], ...] = tuple(checks)


def guard_inputs(guard: InputGuard, inputs: Mapping[str, np.ndarray]) -> None:
    """Raise ``InputFaultError`` when an input holds NaN/infinity or values outside its recorded range."""
    for name, lo, hi, ranged in guard.checks:
        array = inputs[name]
        if array.size == 0:
            continue
        flat = array.reshape(-1)
        if lo <= _MIN(flat) and _MAX(flat) <= hi:  # False for NaN and for infinity
            continue
        _refuse(name, array, lo, hi, ranged)


def _refuse(name: str, array: np.ndarray, lo: Any, hi: Any, ranged: bool) -> None:
    finite = np.isfinite(array)
    if not finite.all():
        bad = int(array.size - np.count_nonzero(finite))
        raise InputFaultError(
            f"input {name!r} holds NaN or infinity",
            code="input_not_finite",
            expected="finite values",
            got=f"{bad} of {array.size} values not finite",
        )
    outside = int(np.count_nonzero((array < lo) | (array > hi)))
    raise InputFaultError(
        f"input {name!r} holds values outside the range seen in calibration",
        code="input_out_of_range",
        expected=[float(lo), float(hi)] if ranged else "finite values",
        got=f"{outside} of {array.size} values in [{float(array.min()):.6g}, {float(array.max()):.6g}]",
    )
