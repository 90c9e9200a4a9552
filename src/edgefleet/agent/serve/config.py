"""The serving configuration: built once at the agent's entry point."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edgefleet.agent.serve.admission import AdmissionPolicy
from edgefleet.agent.serve.ladder import LadderPolicy
from edgefleet.protocol.wire.hardware_class import HardwareClass, Threads
from edgefleet.protocol.wire.manifest import Signature

__all__ = ["RuleConfig", "ServingConfig", "rule_outputs"]


@dataclass(frozen=True)
class RuleConfig:
    """The last rung. ``defer``: answer "no answer now" (503 + Retry-After). ``fixed``: a safe answer,
    ``outputs[name]`` being one sample's value (without the batch axis), repeated for each sample."""

    kind: Literal["defer", "fixed"] = "defer"
    outputs: Mapping[str, Any] = field(default_factory=dict)
    retry_after_s: int = 30

    def __post_init__(self) -> None:
        if self.kind not in ("defer", "fixed"):
            raise ValueError(f"rule kind must be 'defer' or 'fixed', got {self.kind!r}")
        if self.kind == "fixed" and not self.outputs:
            raise ValueError("a fixed rule needs outputs")
        if not 1 <= self.retry_after_s <= 3600:
            raise ValueError("retry_after_s must be in [1, 3600]")


@dataclass(frozen=True)
class ServingConfig:
    max_batch: int = 1
    """The class's ``performance.max_batch``: requests with a larger batch get ``tensor_batch_too_large``."""
    max_elements: int = 16_000_000
    threads: Threads = field(default_factory=Threads)
    ladder: LadderPolicy = field(default_factory=LadderPolicy)
    admission: AdmissionPolicy = field(default_factory=AdmissionPolicy)
    rule: RuleConfig = field(default_factory=RuleConfig)
    fallback_dir: Path | None = None
    """The class's fallback artifact: a directory with ``manifest.json`` and its files."""
    status_path: Path | None = None
    """Where ``edgefleet agent status`` reads the serving mode from (written atomically)."""
    tick_interval_s: float = 1.0
    input_guard: bool = True
    """Refuse non-finite inputs and values outside the manifest's ``input_ranges`` (``serve.guard``)."""

    @classmethod
    def for_class(cls, hardware_class: HardwareClass, **overrides: Any) -> ServingConfig:
        fields: dict[str, Any] = {
            "max_batch": hardware_class.performance.max_batch,
            "threads": hardware_class.threads,
        }
        fields.update(overrides)
        return cls(**fields)


def rule_outputs(rule: RuleConfig, signature: Signature, batch: int) -> dict[str, np.ndarray]:
    """The fixed answer for ``batch`` samples, shaped and typed by the signature. Raises ``ValueError``
    when the rule does not fit the signature (checked when the service loads, not per request)."""
    out: dict[str, np.ndarray] = {}
    specs = {spec.name: spec for spec in signature.outputs}
    if set(rule.outputs) != set(specs):
        raise ValueError(f"fixed rule outputs {sorted(rule.outputs)} differ from the model's {sorted(specs)}")
    for name, value in rule.outputs.items():
        spec = specs[name]
        one = np.asarray(value, dtype=np.dtype(spec.dtype))
        batched = bool(spec.shape) and not isinstance(spec.shape[0], int)
        per_sample: Sequence[int | str | None] = spec.shape[1:] if batched else spec.shape
        if one.ndim != len(per_sample) or any(
            isinstance(d, int) and d != h for d, h in zip(per_sample, one.shape, strict=True)
        ):
            raise ValueError(f"fixed rule output {name!r} has shape {list(one.shape)}, model: {spec.shape}")
        out[name] = np.repeat(one[np.newaxis], batch, axis=0) if batched else one.copy()
    return out
