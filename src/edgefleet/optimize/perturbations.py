"""Degraded inputs, as the field produces them: seeded perturbations of validation inputs, per input kind.

Pure functions ``(array, rng, strength, scale) -> array`` on one float input (first axis = samples);
``scale`` is the input's value range in the validation set (max - min), so a strength means the same thing
for inputs in [0, 1] and in [0, 255]. Integer and bool inputs are left alone. Every perturbation of one set
is drawn from ``numpy.random.default_rng(seed)``: the same seed, data and strengths give the same inputs.

* image: ``gaussian_noise`` (sigma = strength x range), ``blur`` (box blur of radius ``strength`` pixels over
  the two spatial axes), ``brightness_contrast`` (contrast x (1 - strength), brightness + strength x range),
  ``occlusion`` (a square of side ``strength`` x the shorter side set to the input's mean, at a random place
  per sample), ``bit_depth`` (values quantized to ``strength`` bits over the range);
* signal (audio, time series): ``noise``, ``clipping`` (values clipped to ``strength`` x the centre-to-edge
  range), ``dropouts`` (a ``strength`` share of the time axis set to zero, in runs of samples);
* tabular: ``noise`` (per feature, sigma = strength x that feature's std), ``missing`` (a ``strength`` share
  of the values replaced by the feature's mean: what an imputer puts where a sensor sent nothing).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from edgefleet.optimize.errors import BuildInputError

__all__ = [
    "DEFAULT_STRENGTHS",
    "INPUT_KINDS",
    "Perturbation",
    "perturb",
    "perturbations_for",
    "spatial_axes",
]

INPUT_KINDS = ("image", "signal", "tabular", "none")

Apply = Callable[[np.ndarray, np.random.Generator, float, float], np.ndarray]


@dataclass(frozen=True)
class Perturbation:
    name: str
    strength: float
    apply: Apply


def spatial_axes(shape: tuple[int, ...]) -> tuple[int, int]:
    """The two image axes: NHWC when the last axis looks like channels (1, 3, 4) and axis 1 does not,
    else the last two (NCHW, or N x H x W)."""
    if len(shape) == 4 and shape[-1] in (1, 3, 4) and shape[1] not in (1, 3, 4):
        return 1, 2
    return len(shape) - 2, len(shape) - 1


def _gaussian_noise(x: np.ndarray, rng: np.random.Generator, strength: float, scale: float) -> np.ndarray:
    return x + rng.standard_normal(x.shape) * (strength * scale)


def _blur(x: np.ndarray, rng: np.random.Generator, strength: float, scale: float) -> np.ndarray:
    radius = max(1, round(strength))
    out = x.astype(np.float64)
    for axis in spatial_axes(x.shape) if x.ndim >= 3 else (x.ndim - 1,):
        padded = np.concatenate(
            [
                np.repeat(np.take(out, [0], axis), radius, axis),
                out,
                np.repeat(np.take(out, [-1], axis), radius, axis),
            ],
            axis=axis,
        )
        acc = np.zeros_like(out)
        for shift in range(2 * radius + 1):
            acc += np.take(padded, np.arange(shift, shift + out.shape[axis]), axis)
        out = acc / (2 * radius + 1)
    return out


def _brightness_contrast(
    x: np.ndarray, rng: np.random.Generator, strength: float, scale: float
) -> np.ndarray:
    mean = x.mean(axis=tuple(range(1, x.ndim)), keepdims=True)
    return (x - mean) * (1.0 - strength) + mean + strength * scale


def _occlusion(x: np.ndarray, rng: np.random.Generator, strength: float, scale: float) -> np.ndarray:
    out = x.copy()
    if x.ndim < 3:
        return _missing(x, rng, strength, scale)
    h_axis, w_axis = spatial_axes(x.shape)
    h, w = x.shape[h_axis], x.shape[w_axis]
    side = max(1, round(strength * min(h, w)))
    fill = float(x.mean())
    for i in range(len(x)):
        top = int(rng.integers(0, h - side + 1))
        left = int(rng.integers(0, w - side + 1))
        index: list[slice | int] = [slice(None)] * x.ndim
        index[0] = i
        index[h_axis] = slice(top, top + side)
        index[w_axis] = slice(left, left + side)
        out[tuple(index)] = fill
    return out


def _bit_depth(x: np.ndarray, rng: np.random.Generator, strength: float, scale: float) -> np.ndarray:
    levels = 2 ** max(1, round(strength)) - 1
    low = float(x.min())
    step = (scale or 1.0) / levels
    return np.round((x - low) / step) * step + low


def _clipping(x: np.ndarray, rng: np.random.Generator, strength: float, scale: float) -> np.ndarray:
    centre = float(np.median(x))
    half = (scale / 2.0) * strength
    return np.clip(x, centre - half, centre + half)


def _dropouts(x: np.ndarray, rng: np.random.Generator, strength: float, scale: float) -> np.ndarray:
    out = x.copy()
    length = x.shape[-1]
    run = max(1, length // 20)
    runs = max(1, round(strength * length / run))
    for i in range(len(x)):
        for _ in range(runs):
            start = int(rng.integers(0, max(1, length - run + 1)))
            out[i, ..., start : start + run] = 0
    return out


def _feature_noise(x: np.ndarray, rng: np.random.Generator, strength: float, scale: float) -> np.ndarray:
    std = x.std(axis=0, keepdims=True)
    return x + rng.standard_normal(x.shape) * std * strength


def _missing(x: np.ndarray, rng: np.random.Generator, strength: float, scale: float) -> np.ndarray:
    mask = rng.random(x.shape) < strength
    mean = np.broadcast_to(x.mean(axis=0, keepdims=True), x.shape)
    return np.where(mask, mean, x)


_CATALOGUE: dict[str, dict[str, tuple[Apply, float]]] = {
    "image": {
        "gaussian_noise": (_gaussian_noise, 0.05),
        "blur": (_blur, 1.0),
        "brightness_contrast": (_brightness_contrast, 0.2),
        "occlusion": (_occlusion, 0.25),
        "bit_depth": (_bit_depth, 4.0),
    },
    "signal": {
        "noise": (_gaussian_noise, 0.05),
        "clipping": (_clipping, 0.5),
        "dropouts": (_dropouts, 0.1),
    },
    "tabular": {
        "noise": (_feature_noise, 0.1),
        "missing": (_missing, 0.1),
    },
    "none": {},
}
DEFAULT_STRENGTHS: dict[str, dict[str, float]] = {
    kind: {name: strength for name, (_, strength) in table.items()} for kind, table in _CATALOGUE.items()
}


def perturbations_for(kind: str, strengths: Mapping[str, float] | None = None) -> list[Perturbation]:
    """The perturbations of ``kind``, at the default strengths overridden by ``strengths`` (by name; a
    strength of 0 leaves that perturbation out)."""
    if kind not in _CATALOGUE:
        raise BuildInputError(
            "unknown input kind", code="invalid_build_input", expected=list(INPUT_KINDS), got=kind
        )
    table = _CATALOGUE[kind]
    overrides = dict(strengths or {})
    unknown = sorted(set(overrides) - set(table))
    if unknown:
        raise BuildInputError(
            f"unknown perturbation for {kind} inputs",
            code="invalid_build_input",
            expected=sorted(table),
            got=unknown,
        )
    out = []
    for name, (apply, default) in table.items():
        strength = float(overrides.get(name, default))
        if not np.isfinite(strength) or strength < 0:
            raise BuildInputError(
                f"perturbation {name} strength must be a finite number >= 0",
                code="invalid_build_input",
                expected=">= 0",
                got=strength,
            )
        if strength > 0:
            out.append(Perturbation(name, strength, apply))
    return out


def perturb(
    arrays: Mapping[str, np.ndarray], perturbation: Perturbation, *, seed: int
) -> dict[str, np.ndarray]:
    """One perturbed copy of every float input (same dtype and shape); other inputs unchanged."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for name in sorted(arrays):
        x = arrays[name]
        if not np.issubdtype(x.dtype, np.floating):
            out[name] = x
            continue
        wide = x.astype(np.float64)
        scale = float(wide.max() - wide.min()) or 1.0
        out[name] = perturbation.apply(wide, rng, perturbation.strength, scale).astype(x.dtype)
    return out
