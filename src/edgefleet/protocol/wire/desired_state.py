"""The director's desired state as the agent reads it, and the report it sends back (mirrors
``edgefleet.protocol.desired_state``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.protocol.limits import MAX_HOST_TEXT_CHARS
from edgefleet.protocol.names import SHA256_PATTERN, is_safe_relpath
from edgefleet.protocol.update_window import parse_update_window
from edgefleet.protocol.wire.base import Name, Sha256Hex, WireStruct, whole

__all__ = [
    "AppliedConfig",
    "Assignment",
    "CpuInventory",
    "DesiredState",
    "DeviceReport",
    "HostInventory",
    "RuntimeInventory",
    "ServingReport",
    "Signature",
    "SignedEnvelope",
    "SlotReport",
    "TargetHashes",
    "TargetRef",
]

AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]


class TargetHashes(WireStruct, kw_only=True):
    sha256: Sha256Hex


class TargetRef(WireStruct, kw_only=True):
    """A TUF target the director names; the device trusts it only as its verified TUF metadata lists it."""

    path: Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
    length: Annotated[int, msgspec.Meta(ge=0)]
    hashes: TargetHashes

    def __post_init__(self) -> None:
        if not is_safe_relpath(self.path):
            raise ValueError("a relative target path without '..'")

    @property
    def target_path(self) -> str:
        return self.path

    @property
    def sha256(self) -> str:
        return self.hashes.sha256


class Assignment(WireStruct, kw_only=True):
    """One slot's artifact, named by its manifest's TUF target."""

    artifact_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    manifest: TargetRef


class DesiredState(WireStruct, kw_only=True):
    """Signed per device by the director key. Generations strictly increase per device."""

    schema_version: int = 1
    device_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    hardware_class: Name
    generation: Annotated[int, msgspec.Meta(ge=1)]
    issued_at: AwareDatetime
    expires_at: AwareDatetime
    slots: dict[Name, Assignment] = {}
    disabled_artifacts: Annotated[list[str], msgspec.Meta(max_length=1000)] = []
    probe: dict[str, Any] | None = None
    update_window: Annotated[str, msgspec.Meta(max_length=64)] = "any"
    window_exempt_slots: Annotated[list[Name], msgspec.Meta(max_length=64)] = []
    config: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        try:
            parse_update_window(self.update_window)
        except InvalidDocumentError as exc:
            raise ValueError(exc.message) from exc


class Signature(WireStruct, kw_only=True):
    keyid: Annotated[str, msgspec.Meta(pattern=whole(SHA256_PATTERN))]
    sig: Annotated[str, msgspec.Meta(min_length=1, max_length=512)]


class SignedEnvelope(WireStruct, kw_only=True):
    signed: dict[str, Any]
    signatures: Annotated[list[Signature], msgspec.Meta(min_length=1, max_length=8)]


class SlotReport(WireStruct, kw_only=True):
    active: str | None = None
    previous: str | None = None
    state: Annotated[str, msgspec.Meta(max_length=64)] = "idle"
    failed_artifact: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    failure_code: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    desired: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    behind: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    retrying: bool = False


class RuntimeInventory(WireStruct, kw_only=True):
    version: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    execution_providers: Annotated[list[str], msgspec.Meta(max_length=32)] = []
    devices: Annotated[list[str], msgspec.Meta(max_length=32)] = []


class CpuInventory(WireStruct, kw_only=True):
    model: Annotated[str, msgspec.Meta(max_length=MAX_HOST_TEXT_CHARS)] = ""
    arch: Annotated[str, msgspec.Meta(max_length=32)] = ""
    cores: Annotated[int, msgspec.Meta(ge=0, le=4096)] = 0


class HostInventory(WireStruct, kw_only=True):
    os: Annotated[str, msgspec.Meta(max_length=32)] = ""
    os_version: Annotated[str, msgspec.Meta(max_length=MAX_HOST_TEXT_CHARS)] = ""
    kernel: Annotated[str, msgspec.Meta(max_length=MAX_HOST_TEXT_CHARS)] = ""
    python: Annotated[str, msgspec.Meta(max_length=32)] = ""
    cpu: CpuInventory = msgspec.field(default_factory=CpuInventory)


class ServingReport(WireStruct, kw_only=True):
    mode: Annotated[str, msgspec.Meta(max_length=16)]
    reason: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    providers: Annotated[list[str], msgspec.Meta(max_length=16)] = []


class AppliedConfig(WireStruct, kw_only=True):
    generation: Annotated[int, msgspec.Meta(ge=0)] = 0
    applied: Annotated[dict[str, Any], msgspec.Meta(max_length=64)] = {}
    restart_needed: Annotated[list[str], msgspec.Meta(max_length=64)] = []
    refused: Annotated[dict[str, str], msgspec.Meta(max_length=64)] = {}


class DeviceReport(WireStruct, kw_only=True):
    schema_version: int = 1
    sequence: Annotated[int, msgspec.Meta(ge=0)]
    boot_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    reported_at: datetime
    agent_version: Annotated[str, msgspec.Meta(max_length=64)] = ""
    desired_generation: Annotated[int, msgspec.Meta(ge=0)] = 0
    slots: dict[Name, SlotReport] = {}
    status: Literal["ok", "updating", "degraded", "error"] = "ok"
    last_error: dict[str, Any] | None = None
    runtimes: Annotated[dict[str, RuntimeInventory], msgspec.Meta(max_length=8)] | None = None
    serving: ServingReport | None = None
    host: HostInventory | None = None
    timezone: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    config: AppliedConfig | None = None
