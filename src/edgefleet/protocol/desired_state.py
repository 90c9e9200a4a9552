"""What the director wants one device to run (ARCHITECTURE 3.2), and what the device reports back."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, Field, field_validator

from edgefleet.protocol.document import Document, Name, Part, Sha256Hex, is_safe_relpath
from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.protocol.limits import MAX_DESIRED_STATE_BYTES, MAX_HOST_TEXT_CHARS, MAX_REPORT_BYTES

__all__ = [
    "MAX_DESIRED_STATE_BYTES",
    "MAX_HOST_TEXT_CHARS",
    "MAX_REPORT_BYTES",
    "AppliedConfig",
    "Assignment",
    "CpuInventory",
    "DesiredState",
    "DeviceReport",
    "HostInventory",
    "RuntimeInventory",
    "ServingReport",
    "SignedEnvelope",
    "SlotReport",
    "TargetHashes",
    "TargetRef",
]


class TargetHashes(Part):
    sha256: Sha256Hex


class TargetRef(Part):
    """A TUF target the director names: its path, length and hashes, as in TUF targets metadata.

    The director's word is never enough: the device uses the bytes only when its verified TUF metadata lists
    the same path with the same length and hashes, released for its class at or above the release floor
    (``trust.verify.check_assignment``)."""

    path: str = Field(min_length=1, max_length=512)
    length: int = Field(ge=0)
    hashes: TargetHashes

    @field_validator("path")
    @classmethod
    def _safe_path(cls, path: str) -> str:
        if not is_safe_relpath(path):
            raise ValueError("a relative target path without '..'")
        return path

    @property
    def target_path(self) -> str:
        return self.path

    @property
    def sha256(self) -> str:
        return self.hashes.sha256


class Assignment(Part):
    """One slot's artifact, named by its manifest's TUF target. The device takes the manifest (and through
    it every file) from TUF alone; ``artifact_id`` is the control plane's name for it, used in reports.

    Anything the director names this way (a probe bundle's index, for instance) is an ``Assignment`` too:
    a document in TUF that lists the rest."""

    artifact_id: str = Field(min_length=1, max_length=64)
    manifest: TargetRef


class DesiredState(Document):
    """Signed per device by the director key. Generations strictly increase per device."""

    KIND = "desired state"

    device_id: str = Field(min_length=1, max_length=64)
    hardware_class: Name
    generation: int = Field(ge=1)
    issued_at: AwareDatetime
    expires_at: AwareDatetime
    slots: dict[Name, Assignment] = Field(default_factory=dict)
    disabled_artifacts: list[str] = Field(default_factory=list, max_length=1000)
    probe: dict[str, Any] | None = Field(
        default=None, description="a probe order (edgefleet.protocol.probe.ProbeOrder), or None"
    )
    update_window: str = Field(
        default="any",
        max_length=64,
        description="when an installed version may switch, in the device's time zone "
        "(edgefleet.protocol.update_window); downloads happen any time",
    )
    window_exempt_slots: list[Name] = Field(
        default_factory=list,
        max_length=64,
        description="slots an urgent rollout switches whatever the window (an audited operator choice)",
    )
    config: dict[str, Any] | None = Field(
        default=None,
        description="the agent's remote configuration (edgefleet.protocol.agent_config), merged "
        "device > selector > class; None: none set",
    )

    @field_validator("update_window")
    @classmethod
    def _window(cls, value: str) -> str:
        from edgefleet.protocol.update_window import parse_update_window

        try:
            parse_update_window(value)
        except InvalidDocumentError as exc:
            raise ValueError(exc.message) from exc
        return value


class Signature(Part):
    keyid: str = Field(pattern=r"^[0-9a-f]{64}$")
    sig: str = Field(min_length=1, max_length=512, description="base64")


class SignedEnvelope(Part):
    """``signed`` is the document; each signature is over ``canonical_json(signed)``."""

    signed: dict[str, Any]
    signatures: list[Signature] = Field(min_length=1, max_length=8)


class SlotReport(Part):
    active: str | None = Field(default=None, description="artifact id serving now")
    previous: str | None = None
    state: str = Field(default="idle", max_length=64, description="idle, downloading, installing, trial, ...")
    failed_artifact: str | None = Field(
        default=None,
        max_length=64,
        description="the last artifact whose install, health check or trial failed",
    )
    failure_code: str | None = Field(default=None, max_length=64)
    desired: str | None = Field(
        default=None, max_length=64, description="artifact id the desired state names"
    )
    behind: str | None = Field(
        default=None,
        max_length=64,
        description="set while the slot does not serve its desired artifact: why (pending, installing, "
        "failed:<code>, rolled_back:<reason>, refused:<why>)",
    )
    retrying: bool = Field(default=False, description="the agent retries the desired artifact (backoff)")


class RuntimeInventory(Part):
    """One inference runtime installed on the device, as the agent found it at start."""

    version: str = Field(min_length=1, max_length=64)
    execution_providers: list[str] = Field(default_factory=list, max_length=32)
    """What the runtime can really use here, in the class vocabulary (``CUDAExecutionProvider``, ...)."""
    devices: list[str] = Field(default_factory=list, max_length=32, description="OpenVINO's device names")


class CpuInventory(Part):
    """The device's CPU, as the agent read it at start."""

    model: str = Field(default="", max_length=MAX_HOST_TEXT_CHARS, description="e.g. 'Cortex-A78AE'")
    arch: str = Field(default="", max_length=32, description="platform.machine(): x86_64, aarch64, ...")
    cores: int = Field(default=0, ge=0, le=4096, description="logical CPUs (0: unknown)")


class HostInventory(Part):
    """The device's OS and CPU. Bounded: the agent clips each text to its limit before it reports (it never
    sends a longer one), and the control plane refuses a report whose text is over its limit."""

    os: str = Field(default="", max_length=32, description="platform.system() lowercased: linux, windows")
    os_version: str = Field(default="", max_length=MAX_HOST_TEXT_CHARS, description="distribution or release")
    kernel: str = Field(default="", max_length=MAX_HOST_TEXT_CHARS)
    python: str = Field(default="", max_length=32)
    cpu: CpuInventory = Field(default_factory=CpuInventory)


class ServingReport(Part):
    """Which rung of the degraded ladder serves now, and why it is not the preferred one."""

    mode: str = Field(max_length=16)
    reason: str | None = Field(default=None, max_length=64, description="the error code that sent it there")
    providers: list[str] = Field(default_factory=list, max_length=16)


class AppliedConfig(Part):
    """What the agent made of the desired state's ``config``: the values it runs with now, the settings it
    takes only at its next start, and those it refused (setting -> error code)."""

    generation: int = Field(default=0, ge=0, description="the desired-state generation it came with")
    applied: dict[str, Any] = Field(default_factory=dict, max_length=64)
    restart_needed: list[str] = Field(default_factory=list, max_length=64)
    refused: dict[str, str] = Field(default_factory=dict, max_length=64)


class DeviceReport(Document):
    """What the agent runs and does. Idempotent: the server keeps the newest by ``sequence``."""

    KIND = "device report"

    sequence: int = Field(ge=0, description="increases with every report of one boot; with boot_id, orders")
    boot_id: str = Field(min_length=1, max_length=64)
    reported_at: datetime
    agent_version: str = Field(default="", max_length=64)
    desired_generation: int = Field(default=0, ge=0, description="last desired-state generation accepted")
    slots: dict[Name, SlotReport] = Field(default_factory=dict)
    status: Literal["ok", "updating", "degraded", "error"] = "ok"
    last_error: dict[str, Any] | None = Field(default=None, description="{code, message, at}")
    runtimes: dict[str, RuntimeInventory] | None = Field(
        default=None, max_length=8, description="runtime name -> version and providers; None: not known yet"
    )
    serving: ServingReport | None = None
    host: HostInventory | None = Field(default=None, description="OS and CPU; None: an older agent")
    timezone: str | None = Field(
        default=None, max_length=64, description="the device's IANA time zone (its update window's clock)"
    )
    config: AppliedConfig | None = None
