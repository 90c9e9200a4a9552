"""What the agent and its fetch child say to each other: one JSON request on stdin, one JSON line on stdout.

Both sides import this module, so it imports nothing of TUF, securesystemslib, cryptography or httpx.

Request (``FetchRequest.to_json``)::

    {"operation": "resolve" | "fetch" | "director_keys", "agent_pid": ..., "data_dir": ..., "identity": ...,
     "now": <ISO time>, "http_timeout_s": ..., "max_bytes_per_s": ... | null, "min_bytes_per_s": ...,
     "assignment": <Assignment>            # resolve
     "resolved": {"artifact_id", "target", "manifest"}, "staging_dir": ...}   # fetch

Reply: ``{"ok": <result>, "events": [...]}``, ``{"error": {"classes", "code", "message", "details"}, "events":
[...]}`` or ``{"os_error": {"errno", "message"}, "events": [...]}``. Results: resolve ``{"manifest_b64"}``
(the verified manifest bytes: the agent parses them and checks them against the target again); fetch
``{"files": {manifest path: file}, "transfer": {...}}``; director_keys ``{"pems": [...]}``. ``events`` are the
security events the fetcher emitted, in order: the agent records them in its own telemetry as the in-process
fetcher did. ``classes`` names the error's class and its bases, most specific first: the agent raises the
first of them it knows with the same code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from edgefleet.agent.install.steps import TransferReport
from edgefleet.protocol import errors as protocol_errors
from edgefleet.protocol.errors import EdgefleetError
from edgefleet.trust import errors as trust_errors
from edgefleet.trust.events import SecurityEvent

__all__ = [
    "OPERATIONS",
    "FetchRequest",
    "error_from_json",
    "error_to_json",
    "event_from_json",
    "event_to_json",
    "report_from_json",
]

OPERATIONS = ("resolve", "fetch", "director_keys")


@dataclass(frozen=True)
class FetchRequest:
    operation: str
    agent_pid: int
    """The child dies with this process (``fetch_child``)."""
    data_dir: str
    identity: dict[str, Any]
    """The agent's ``DeviceIdentity`` (its class and content URL), as read when it started."""
    now: str
    """The agent's clock (ISO): the child judges expiry at the time the agent would have."""
    http_timeout_s: float
    max_bytes_per_s: float | None
    min_bytes_per_s: float
    assignment: dict[str, Any] | None = None
    resolved: dict[str, Any] | None = None
    staging_dir: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FetchRequest:
        if data.get("operation") not in OPERATIONS:
            raise ValueError(f"unknown operation {data.get('operation')!r}")
        return cls(**data)


def event_to_json(event: SecurityEvent) -> dict[str, Any]:
    return {
        "code": event.code,
        "message": event.message,
        "at": event.at.isoformat(),
        "details": event.details,
    }


def event_from_json(data: dict[str, Any]) -> SecurityEvent:
    return SecurityEvent(
        code=str(data["code"]),
        message=str(data["message"]),
        at=datetime.fromisoformat(data["at"]),
        details=dict(data.get("details") or {}),
    )


def error_to_json(error: EdgefleetError) -> dict[str, Any]:
    classes = [c.__name__ for c in type(error).__mro__ if issubclass(c, EdgefleetError)]
    return {"classes": classes, **error.to_body()}


def _known_errors() -> dict[str, type[EdgefleetError]]:
    """The error classes the agent can raise without importing the child's stack (TUF, delta code)."""
    known: dict[str, type[EdgefleetError]] = {}
    for module in (protocol_errors, trust_errors):
        for name in module.__all__:
            cls = getattr(module, name)
            if isinstance(cls, type) and issubclass(cls, EdgefleetError):
                known[name] = cls
    return known


_KNOWN_ERRORS = _known_errors()


def error_from_json(data: dict[str, Any]) -> EdgefleetError:
    """The child's error with its exact code, as the most specific class of it the agent knows (a
    ``NoTrustRootError`` comes back a ``TrustError`` with code ``no_trust_root``)."""
    cls = next((_KNOWN_ERRORS[n] for n in data.get("classes", []) if n in _KNOWN_ERRORS), EdgefleetError)
    details = data.get("details")
    return cls(
        str(data.get("message", "")),
        code=str(data["code"]),
        details=details if isinstance(details, dict) else {},
    )


def report_from_json(data: dict[str, Any]) -> TransferReport:
    return TransferReport(
        full_bytes=int(data["full_bytes"]),
        bytes_downloaded=int(data["bytes_downloaded"]),
        delta_files=int(data["delta_files"]),
        fallbacks={str(k): str(v) for k, v in dict(data["fallbacks"]).items()},
    )
