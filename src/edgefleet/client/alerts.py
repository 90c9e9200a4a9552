"""Alert calls of the control-plane client: webhooks and their delivery log."""

from __future__ import annotations

import re
from typing import Any

from edgefleet.protocol.errors import InvalidDocumentError

__all__ = ["AlertsApi", "webhook_id"]

_WEBHOOK_ID = re.compile(r"^wh_[0-9a-f]{16}$")


def webhook_id(value: str) -> str:
    if not isinstance(value, str) or not _WEBHOOK_ID.fullmatch(value):
        raise InvalidDocumentError(
            "invalid webhook id", code="invalid_webhook_id", expected="wh_<16 hex>", got=str(value)[:80]
        )
    return value


class AlertsApi:
    """Mixed into ``EdgefleetClient``; relies on its ``_json``."""

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:  # pragma: no cover - provided
        raise NotImplementedError

    def create_webhook(
        self, name: str, url: str, *, events: list[str] | None = None, secret: str | None = None
    ) -> dict[str, Any]:
        """Create a webhook (admin). Without ``secret`` the server makes one and answers it once
        (``secret`` in the result); a given secret is never sent back."""
        body: dict[str, Any] = {"name": name, "url": url, "events": list(events or [])}
        if secret is not None:
            body["secret"] = secret
        result: dict[str, Any] = self._json("POST", "/v1/webhooks", json=body)
        return result

    def list_webhooks(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._json("GET", "/v1/webhooks")["items"]
        return items

    def delete_webhook(self, value: str) -> None:
        self._json("DELETE", f"/v1/webhooks/{webhook_id(value)}")

    def test_webhook(self, value: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("POST", f"/v1/webhooks/{webhook_id(value)}/test")
        return result

    def list_deliveries(
        self,
        *,
        status: str | None = None,
        webhook: str | None = None,
        kind: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> dict[str, Any]:
        """The delivery log, newest first (``items``, ``total``)."""
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        for key, value in (("status", status), ("webhook_id", webhook), ("kind", kind)):
            if value is not None:
                params[key] = value
        result: dict[str, Any] = self._json("GET", "/v1/alerts/deliveries", params=params)
        return result
