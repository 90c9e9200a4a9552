"""Remote agent configuration calls of the control-plane client."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from edgefleet.client.devices import _device_id
from edgefleet.protocol.agent_config import check_agent_config

__all__ = ["ConfigApi"]


class ConfigApi:
    """Mixed into ``EdgefleetClient``; relies on its ``_json``."""

    def _json(
        self, method: str, path: str, **kwargs: Any
    ) -> Any:  # pragma: no cover - provided by the client
        raise NotImplementedError

    def list_config(self) -> dict[str, Any]:
        """Every layer (``items``) and the settings table (``settings``: expected bounds, live or not)."""
        return dict(self._json("GET", "/v1/config"))

    def set_config(self, *, scope: str, target: str, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Add or change settings in one layer. Checked here first (the server checks again)."""
        check_agent_config(settings)
        body = {"scope": scope, "target": target, "settings": dict(settings)}
        return dict(self._json("PUT", "/v1/config", json=body))

    def unset_config(self, *, scope: str, target: str, settings: Sequence[str] = ()) -> dict[str, Any]:
        body = {"scope": scope, "target": target, "settings": list(settings)}
        return dict(self._json("POST", "/v1/config/unset", json=body))

    def device_config(self, device_id: str) -> dict[str, Any]:
        """Desired (merged, with sources) vs signed vs applied configuration, and the update window."""
        return dict(self._json("GET", f"/v1/devices/{_device_id(device_id)}/config"))
