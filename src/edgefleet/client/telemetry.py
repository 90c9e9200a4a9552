"""Telemetry views of the control-plane client: fleet health and one device's recent data."""

from __future__ import annotations

from typing import Any

__all__ = ["TelemetryApi"]


class TelemetryApi:
    """Mixed into ``EdgefleetClient``; relies on its ``_json``."""

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:  # pragma: no cover - from the client
        raise NotImplementedError

    def fleet_health(
        self,
        *,
        hardware_class: str | None = None,
        model_version: str | None = None,
        since: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        params: list[tuple[str, str]] = []
        for key, value in (
            ("hardware_class", hardware_class),
            ("model_version", model_version),
            ("since", since),
        ):
            if value is not None:
                params.append((key, value))
        params += [("label", f"{k}={v}") for k, v in (labels or {}).items()]
        return dict(self._json("GET", "/v1/fleet/health", params=params))

    def device_telemetry(
        self, device_id: str, *, since: str | None = None, limit: int = 50
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if since is not None:
            params["since"] = since
        return dict(self._json("GET", f"/v1/devices/{device_id}/telemetry", params=params))
