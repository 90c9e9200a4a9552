"""A probe's names and bounds, and the reading of its validation file: plain data and a plain function.

The pydantic models (``edgefleet.protocol.probe``, which re-exports these) and the agent's structs
(``edgefleet.protocol.wire.probe``) both take them from here."""

from __future__ import annotations

from typing import Any

__all__ = [
    "MAX_LATENCY_SAMPLES",
    "MAX_PROBE_RESULTS_BYTES",
    "PERTURBED_PREFIX",
    "PROBE_ID_PATTERN",
    "PROBE_INDEX_FILE",
    "PROBE_VALIDATION_FILE",
    "perturbed_sets",
]

PROBE_ID_PATTERN = r"^prb_[0-9a-f]{16}$"
PROBE_INDEX_FILE = "probe.json"
PROBE_VALIDATION_FILE = "validation.npz"
MAX_PROBE_RESULTS_BYTES = 1_000_000
MAX_LATENCY_SAMPLES = 500

PERTURBED_PREFIX = "perturbed:"
"""Keys of the probe's validation file ``perturbed:<perturbation>:input:<name>`` and
``perturbed:<perturbation>:reference``: the build's seeded perturbed validation inputs (docs/build.md,
robustness) and FP32's judged output on them. A device measures every candidate on the same perturbed
inputs."""


def perturbed_sets(
    arrays: dict[str, Any],
) -> dict[str, tuple[dict[str, Any], Any]]:
    """Pure: ``{perturbation: (inputs by name, reference)}`` from a validation file's arrays."""
    out: dict[str, tuple[dict[str, Any], Any]] = {}
    for key, value in arrays.items():
        if not key.startswith(PERTURBED_PREFIX):
            continue
        name, _, rest = key.removeprefix(PERTURBED_PREFIX).partition(":")
        inputs, reference = out.get(name, ({}, None))
        if rest == "reference":
            reference = value
        elif rest.startswith("input:"):
            inputs[rest.removeprefix("input:")] = value
        out[name] = (inputs, reference)
    return {k: v for k, v in out.items() if v[0] and v[1] is not None}
