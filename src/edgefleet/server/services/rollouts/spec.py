"""What an operator asks for: stages with sizes, soak times, deadlines and health gates."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["DEFAULT_STAGES", "Gates", "RolloutSpec", "StageSpec"]


class Gates(BaseModel):
    """Thresholds a stage must hold over its soak time. ``None`` switches a gate off."""

    model_config = ConfigDict(extra="forbid")

    max_install_failure_rate: float = Field(default=0.0, ge=0, le=1)
    """Devices of the stage whose install or health check failed, as a fraction of those that finished."""
    max_error_rate: float | None = Field(default=0.01, ge=0, le=1)
    """Inference errors / requests on the new version, over the stage's devices."""
    max_latency_p95_ms: float | None = Field(default=None, gt=0)
    """Absolute ceiling; when unset the class envelope (``performance.latency_p95_ms``) applies."""
    max_latency_p95_ratio: float | None = Field(default=1.5, gt=0)
    """p95 of the new version / p95 of the previous version on the same devices."""
    min_shadow_agreement: float | None = Field(default=None, ge=0, le=1)
    min_reporting_devices: int = Field(default=1, ge=0)
    min_requests: int = Field(default=1, ge=0)
    """Requests served by the new version in the stage before its inference gates can pass."""


class StageSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    count: int | None = Field(default=None, ge=1)
    percent: float | None = Field(default=None, gt=0, le=100)
    soak_s: float = Field(default=300, ge=0)
    deadline_s: float = Field(default=3600, gt=0)
    """Server-enforced: after this long in the stage, pending (offline) devices are reported and
    ``on_deadline`` applies."""
    on_deadline: Literal["wait", "proceed", "halt"] = "proceed"
    manual_promotion: bool = False
    shadow: bool = False
    """Run this stage in shadow: its devices keep serving the previous version and run the new one beside it
    on sampled live requests; only agreement statistics leave the device. Pair it with
    ``gates.min_shadow_agreement``; the inference gates (errors, latency) wait for a serving stage."""
    gates: Gates = Field(default_factory=Gates)

    @model_validator(mode="after")
    def _one_size(self) -> StageSpec:
        if (self.count is None) == (self.percent is None):
            raise ValueError("a stage has exactly one of count or percent")
        return self


DEFAULT_STAGES: tuple[StageSpec, ...] = (
    StageSpec(count=1, soak_s=300),
    StageSpec(percent=5, soak_s=600),
    StageSpec(percent=25, soak_s=1800),
    StageSpec(percent=100, soak_s=0),
)


class RolloutSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stages: list[StageSpec] = Field(default_factory=lambda: list(DEFAULT_STAGES), min_length=1, max_length=20)
    enrolling_devices: Literal["old", "new"] = "old"
    """What a device that enrolls during the rollout gets until the rollout completes."""
    spread_label: str = "site"
    """Stage members are spread across the values of this label where possible."""
    ignore_windows: bool = False
    """Urgent: the rollout's devices switch whatever their update window (downloads never wait). An
    explicit operator choice, audited (``rollout.windows_overridden``)."""
