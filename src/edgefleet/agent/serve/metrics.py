"""What the serving layer reports, as a small protocol; ``agent.telemetry``'s recorder satisfies it."""

from __future__ import annotations

from typing import Any, Protocol

from edgefleet.protocol.telemetry_kinds import ShadowSample

__all__ = ["MetricsSink", "NullMetrics", "ShadowSample"]


class MetricsSink(Protocol):
    """Called from serving threads (the hot path for ``record_request``): must be thread-safe and cheap.
    The ``record_shadow*`` calls come from the shadow worker, off the active path."""

    def record_request(
        self, model_version: str, rung: str, latency_ms: float, error_code: str | None = None
    ) -> None: ...

    def record_shadow(
        self, agreement: float | bool, *, model_version: str = "unknown", sample: ShadowSample | None = None
    ) -> None: ...

    def record_shadow_error(self, model_version: str, error_code: str) -> None: ...

    def record_shadow_skipped(self, model_version: str) -> None: ...

    def record_degraded_time(self, rung: str, seconds: float) -> None: ...

    def record_event(self, kind: str, code: str, details: dict[str, Any] | None = None) -> int | None: ...


class NullMetrics:
    """The default: records nothing."""

    def record_request(
        self, model_version: str, rung: str, latency_ms: float, error_code: str | None = None
    ) -> None:
        return None

    def record_shadow(
        self, agreement: float | bool, *, model_version: str = "unknown", sample: ShadowSample | None = None
    ) -> None:
        return None

    def record_shadow_error(self, model_version: str, error_code: str) -> None:
        return None

    def record_shadow_skipped(self, model_version: str) -> None:
        return None

    def record_degraded_time(self, rung: str, seconds: float) -> None:
        return None

    def record_event(self, kind: str, code: str, details: dict[str, Any] | None = None) -> int | None:
        return None
