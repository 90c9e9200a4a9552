"""Remote agent configuration calls of the control-plane client."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from edgefleet.client.devices import _device_id
from edgefleet.protocol.agent_config import check_agent_config
from edgefleet.protocol.errors import ConflictError

__all__ = ["CONFLICT_RETRIES", "ConfigApi"]

CONFLICT_RETRIES = 3
"""A layer write answered ``conflict`` (another write to the same layer committed first, nothing of this one
was kept) is sent again up to this many times: the server merges into the layer as it then reads it."""


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
        return self._write("PUT", "/v1/config", body)

    def unset_config(self, *, scope: str, target: str, settings: Sequence[str] = ()) -> dict[str, Any]:
        body = {"scope": scope, "target": target, "settings": list(settings)}
        return self._write("POST", "/v1/config/unset", body)

    def _write(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """One layer write, sent again on ``conflict`` (``CONFLICT_RETRIES``); other refusals, such as
        ``config_selector_overlap``, are final at once."""
        for retry in range(CONFLICT_RETRIES + 1):
            try:
                return dict(self._json(method, path, json=body))
            except ConflictError as exc:
                if exc.code != "conflict":
                    raise
                if retry == CONFLICT_RETRIES:
                    exc.message = (
                        f"{exc.message} (still conflicting after {CONFLICT_RETRIES} retries: another "
                        "writer keeps changing this layer; run the command again once it is done)"
                    )
                    exc.args = (exc.message,)
                    exc.details["attempts"] = CONFLICT_RETRIES + 1
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def device_config(self, device_id: str) -> dict[str, Any]:
        """Desired (merged, with sources) vs signed vs applied configuration, and the update window."""
        return dict(self._json("GET", f"/v1/devices/{_device_id(device_id)}/config"))
