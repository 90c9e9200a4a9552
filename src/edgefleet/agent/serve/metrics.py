"""What the serving layer reports, as a small protocol; ``agent.telemetry``'s recorder satisfies it."""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["MetricsSink", "NullMetrics"]


class MetricsSink(Protocol):
    """Called from serving threads (the hot path for ``record_request``): must be thread-safe and cheap."""

    def record_request(
        self, model_version: str, rung: str, latency_ms: float, error_code: str | None = None
    ) -> None: ...

    def record_shadow(self, agreement: float | bool, *, model_version: str = "unknown") -> None: ...

    def record_degraded_time(self, rung: str, seconds: float) -> None: ...

    def record_event(self, kind: str, code: str, details: dict[str, Any] | None = None) -> int | None: ...


class NullMetrics:
    """The default: records nothing."""

    def record_request(
        self, model_version: str, rung: str, latency_ms: float, error_code: str | None = None
    ) -> None:
        return None

    def record_shadow(self, agreement: float | bool, *, model_version: str = "unknown") -> None:
        return None

    def record_degraded_time(self, rung: str, seconds: float) -> None:
        return None

    def record_event(self, kind: str, code: str, details: dict[str, Any] | None = None) -> int | None:
        return None
