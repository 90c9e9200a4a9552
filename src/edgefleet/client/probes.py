"""Probe calls of the control-plane client: create (or check) a probe, list and read probes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.protocol.probe import PROBE_ID_PATTERN

__all__ = ["PROBE_STATUSES", "ProbesApi", "probe_id"]

PROBE_STATUSES = ("running", "complete", "partial", "expired")
_PROBE_ID = re.compile(PROBE_ID_PATTERN)


def probe_id(value: str) -> str:
    if not isinstance(value, str) or not _PROBE_ID.fullmatch(value):
        raise InvalidDocumentError(
            "invalid probe id", code="invalid_probe_id", expected="prb_<16 hex>", got=str(value)[:80]
        )
    return value


class ProbesApi:
    """Mixed into ``EdgefleetClient``; relies on its ``_json``."""

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:  # pragma: no cover - provided
        raise NotImplementedError

    def create_probe(
        self,
        *,
        hardware_class: str,
        manifest: Mapping[str, Any],
        devices: int | None = None,
        labels: Mapping[str, str] | None = None,
        device_ids: list[str] | None = None,
        deadline_s: float = 3600.0,
        runs: int = 50,
        sustained_s: float = 0.0,
        time_limit_s: float = 300.0,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """``dry_run``: only check (class, devices, bundle against the class) and say who would be asked."""
        body = {
            "hardware_class": hardware_class,
            "manifest": dict(manifest),
            "devices": devices,
            "labels": dict(labels or {}),
            "device_ids": list(device_ids or []),
            "deadline_s": deadline_s,
            "runs": runs,
            "sustained_s": sustained_s,
            "time_limit_s": time_limit_s,
            "dry_run": dry_run,
        }
        result: dict[str, Any] = self._json("POST", "/v1/probes", json=body)
        return result

    def list_probes(self, *, model: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if model is not None:
            params["model"] = model
        items: list[dict[str, Any]] = self._json("GET", "/v1/probes", params=params)["items"]
        return items

    def get_probe(self, value: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", f"/v1/probes/{probe_id(value)}")
        return result
