"""The input guard: a request whose values no working sensor produces is refused before the model runs.

Pure. Per float input: every value finite (``input_not_finite``) and, when the manifest records a range
from the calibration set, inside it (``input_out_of_range``). Both come from one ``min``/``max`` pass per
input (NaN propagates through both, infinity is out of any range); the slower element-wise look that names
what is wrong runs only on the refused request. Shapes, dtypes and names are checked before, by
``validate.validate_inputs``. Every refusal is an input fault (``protocol.telemetry.error_kind``): counted
apart in telemetry, never a model error.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

import numpy as np

from edgefleet.agent.serve.errors import InputFaultError
from edgefleet.protocol.manifest import InputRange, Signature

__all__ = ["InputGuard", "guard_inputs"]

_LARGEST = sys.float_info.max
"""the bound without a recorded range: every finite value is inside, infinity is not"""


class InputGuard:
    """Which inputs to look at and their bounds, derived once per loaded artifact."""

    __slots__ = ("checks",)

    def __init__(self, signature: Signature, ranges: Mapping[str, InputRange] | None = None) -> None:
        ranges = ranges or {}
        checks: list[tuple[str, float, float, bool]] = []
        for spec in signature.inputs:
            if not spec.dtype.startswith("float"):
                continue
            bound = ranges.get(spec.name)
            lo, hi = (bound.min, bound.max) if bound is not None else (-_LARGEST, _LARGEST)
            checks.append((spec.name, lo, hi, bound is not None))
        self.checks: tuple[tuple[str, float, float, bool], ...] = tuple(checks)


def guard_inputs(guard: InputGuard, inputs: Mapping[str, np.ndarray]) -> None:
    """Raise ``InputFaultError`` when an input holds NaN/infinity or values outside its recorded range."""
    for name, lo, hi, ranged in guard.checks:
        array = inputs[name]
        if array.size == 0:
            continue
        low = float(array.min())
        high = float(array.max())
        if lo <= low and high <= hi:  # False for NaN and for infinity
            continue
        _refuse(name, array, lo, hi, ranged)


def _refuse(name: str, array: np.ndarray, lo: float, hi: float, ranged: bool) -> None:
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
        expected=[lo, hi] if ranged else "finite values",
        got=f"{outside} of {array.size} values in [{float(array.min()):.6g}, {float(array.max()):.6g}]",
    )
