"""Device calls of the control-plane client: enrollment tokens, the device registry, pins."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from edgefleet.protocol.errors import InvalidDocumentError

__all__ = ["DeviceInfo", "DevicesApi", "EnrollmentTokenInfo", "PinInfo", "RollbackInfo"]


class _Resource(BaseModel):
    model_config = ConfigDict(extra="allow")


class EnrollmentTokenInfo(_Resource):
    id: str
    token: str
    hardware_class: str
    labels: dict[str, str] = {}
    serial: str | None = None
    uses: int
    expires_at: str


class DeviceInfo(_Resource):
    id: str
    hardware_class: str
    labels: dict[str, str] = {}
    serial: str | None = None
    status: str
    enrolled_at: str
    last_seen_at: str | None = None
    revoked_at: str | None = None
    revoked_reason: str | None = None
    agent_version: str = ""
    desired_generation: int = 0
    report: dict[str, Any] | None = None
    behind: list[dict[str, Any]] = []
    """The slots the device's newest report says lag their desired artifact: ``slot``, ``desired``,
    ``active``, ``why``, ``retrying`` (``server.services.device_updates``)."""
    inventory: dict[str, Any] | None = None
    """OS, CPU, runtimes and providers of its newest report (``server.services.inventory``)."""
    decommissioned_at: str | None = None


class RollbackInfo(_Resource):
    """The device pin a rollback set: ``artifact_id`` is the ``previous`` the device last reported."""

    scope: str = "device"
    target: str
    slot: str
    artifact_id: str
    pinned: bool = True
    rolled_back_from: str | None = None


class PinInfo(_Resource):
    """One pin as ``GET /v1/pins`` lists it."""

    scope: str
    target: str
    slot: str
    artifact_id: str
    created_at: str
    created_by: str


class DevicesApi:
    """Mixed into ``EdgefleetClient``; relies on its ``_json``."""

    def _json(
        self, method: str, path: str, **kwargs: Any
    ) -> Any:  # pragma: no cover - provided by the client
        raise NotImplementedError

    def create_enrollment_token(
        self,
        hardware_class: str,
        *,
        labels: dict[str, str] | None = None,
        serial: str | None = None,
        ttl_s: int = 3600,
        uses: int = 1,
    ) -> EnrollmentTokenInfo:
        body = {
            "hardware_class": hardware_class,
            "labels": labels or {},
            "serial": serial,
            "ttl_s": ttl_s,
            "uses": uses,
        }
        return EnrollmentTokenInfo.model_validate(self._json("POST", "/v1/enrollment-tokens", json=body))

    def list_devices(
        self,
        *,
        hardware_class: str | None = None,
        labels: dict[str, str] | None = None,
        status: str | None = None,
        limit: int = 50,
        offset: int = 0,
        selector: str | None = None,
        inventory: Mapping[str, str | None] | None = None,
        include_decommissioned: bool = False,
    ) -> tuple[list[DeviceInfo], int]:
        """``inventory``: filters ``os``, ``arch``, ``agent_version``, ``runtime`` (name or name=version),
        ``provider``; ``include_decommissioned``: list decommissioned devices too."""
        params: list[tuple[str, Any]] = [("limit", limit), ("offset", offset)]
        if hardware_class:
            params.append(("hardware_class", hardware_class))
        if status:
            params.append(("status", status))
        if selector is not None:
            params.append(("selector", selector))
        params += [(k, v) for k, v in (inventory or {}).items() if v is not None]
        if include_decommissioned:
            params.append(("include_decommissioned", "true"))
        params += [("label", f"{k}={v}") for k, v in (labels or {}).items()]
        page = self._json("GET", "/v1/devices", params=params)
        return [DeviceInfo.model_validate(d) for d in page["items"]], int(page["total"])

    def get_device(self, device_id: str) -> DeviceInfo:
        return DeviceInfo.model_validate(self._json("GET", f"/v1/devices/{_device_id(device_id)}"))

    def get_device_desired_state(self, device_id: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/v1/devices/{_device_id(device_id)}/desired-state"))

    def revoke_device(self, device_id: str, *, reason: str = "") -> DeviceInfo:
        data = self._json("POST", f"/v1/devices/{_device_id(device_id)}/revoke", json={"reason": reason})
        return DeviceInfo.model_validate(data)

    def rollback_device(self, device_id: str, *, slot: str = "default") -> RollbackInfo:
        """Pin the device's ``slot`` to the artifact its last report names as ``previous``
        (``no_previous_version`` when it reported none)."""
        data = self._json("POST", f"/v1/devices/{_device_id(device_id)}/rollback", json={"slot": slot})
        return RollbackInfo.model_validate(data)

    def list_pins(
        self, *, scope: str | None = None, target: str | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[list[PinInfo], int]:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if scope:
            params["scope"] = scope
        if target:
            params["target"] = target
        page = self._json("GET", "/v1/pins", params=params)
        return [PinInfo.model_validate(p) for p in page["items"]], int(page["total"])

    def relabel_device(
        self, device_id: str, *, set_labels: Mapping[str, str] | None = None, remove: Sequence[str] = ()
    ) -> DeviceInfo:
        body = {"set": dict(set_labels or {}), "remove": list(remove)}
        data = self._json("PATCH", f"/v1/devices/{_device_id(device_id)}/labels", json=body)
        return DeviceInfo.model_validate(data)

    def relabel_devices(
        self,
        selector: str,
        *,
        set_labels: Mapping[str, str] | None = None,
        remove: Sequence[str] = (),
        hardware_class: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Relabel every device ``selector`` matches: ``{"matched", "changed": [{id, before, after}],
        "dry_run"}``."""
        body = {
            "selector": selector,
            "set": dict(set_labels or {}),
            "remove": list(remove),
            "hardware_class": hardware_class,
            "dry_run": dry_run,
        }
        return dict(self._json("POST", "/v1/devices/relabel", json=body))

    def decommission_device(self, device_id: str, *, reason: str = "") -> DeviceInfo:
        data = self._json(
            "POST", f"/v1/devices/{_device_id(device_id)}/decommission", json={"reason": reason}
        )
        return DeviceInfo.model_validate(data)

    def pin_selection(
        self,
        selector: str,
        *,
        slot: str = "default",
        artifact_id: str | None,
        hardware_class: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Set (or clear, ``artifact_id=None``) the device pin of every device ``selector`` matches."""
        body = {
            "selector": selector,
            "slot": slot,
            "artifact_id": artifact_id,
            "hardware_class": hardware_class,
            "dry_run": dry_run,
        }
        return dict(self._json("POST", "/v1/pins/by-selector", json=body))

    def pin(self, *, scope: str, target: str, slot: str, artifact_id: str | None) -> None:
        if scope not in ("class", "device"):
            raise InvalidDocumentError("scope must be class or device", code="invalid_scope", got=scope)
        path = f"/v1/pins/{scope}/{target}/{slot}"
        if artifact_id is None:
            self._json("DELETE", path)
        else:
            self._json("PUT", path, json={"artifact_id": artifact_id})


def _device_id(value: str) -> str:
    if not (value.startswith("dev_") and len(value) == 24 and value[4:].isalnum()):
        raise InvalidDocumentError(
            "invalid device id", code="invalid_device_id", expected="dev_<20 hex>", got=value
        )
    return value
