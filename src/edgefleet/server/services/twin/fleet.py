"""A described fleet for the twin: devices per hardware class and how they behave (pure; no IO).

Read from a TOML file (``edgefleet sim run FLEET.toml``) or built from what the control plane knows
(``edgefleet rollout create --dry-run``). Every value is bounded; an impossible one (a negative rate, a
fraction above 1, a class the scenario names but the fleet lacks) is refused with ``invalid_fleet`` naming
the field.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edgefleet.protocol.document import validation_details
from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.protocol.hardware_class import HardwareClass
from edgefleet.protocol.update_window import UpdateWindow, check_zone, parse_update_window

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "MAX_FLEET_DEVICES",
    "ClassFleet",
    "FleetSpec",
    "LinkSpeed",
    "ModelFigures",
    "Outages",
    "UpdateWindow",
    "parse_fleet",
    "parse_fleet_toml",
    "with_class_documents",
]

MAX_FLEET_DEVICES = 1_000_000
MAX_FLEET_FILE_BYTES = 512 * 1024
WEEK_S = 7 * 86400


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LinkSpeed(_Strict):
    """Each device's download bandwidth, drawn log-uniformly in ``[min_mbps, max_mbps]`` (megabits/s)."""

    min_mbps: float = Field(default=10.0, gt=0, le=100_000)
    max_mbps: float = Field(default=10.0, gt=0, le=100_000)
    measured_from: str = ""
    """where the figures come from (e.g. "past downloads of 12 devices"); empty: as described"""

    @model_validator(mode="after")
    def _ordered(self) -> LinkSpeed:
        if self.max_mbps < self.min_mbps:
            raise ValueError("max_mbps must be >= min_mbps")
        return self


class Outages(_Strict):
    """Which devices go offline and how: ``fraction`` of the class follows ``pattern``.

    * ``random``: ``per_week`` outages each, at random times, each ``min_s..max_s`` long;
    * ``nightly``: offline every day from ``from_hour`` to ``to_hour`` (UTC);
    * ``always``: offline for the whole run (a device that went silent and has not come back)."""

    fraction: float = Field(default=0.0, ge=0, le=1)
    pattern: Literal["random", "nightly", "always"] = "random"
    per_week: float = Field(default=1.0, ge=0, le=1000)
    min_s: float = Field(default=3600.0, gt=0)
    max_s: float = Field(default=4 * 3600.0, gt=0)
    from_hour: int = Field(default=20, ge=0, le=23)
    to_hour: int = Field(default=6, ge=0, le=23)

    @model_validator(mode="after")
    def _ordered(self) -> Outages:
        if self.max_s < self.min_s:
            raise ValueError("max_s must be >= min_s")
        return self


class ModelFigures(_Strict):
    """One version's behaviour on one class: what its devices' requests see."""

    latency_p95_ms: float | None = Field(default=None, gt=0)
    """``None``: unknown (the latency gates then stay waiting or off, as they would with no telemetry)"""
    error_rate: float = Field(default=0.0, ge=0, le=1)
    """model errors / requests"""
    shadow_agreement: float = Field(default=1.0, ge=0, le=1)
    """agreement with the previous version in a shadow stage"""
    source: str = ""
    """where the figures were measured (build report, probe on a device, emulated class limits, ...)"""


class ClassFleet(_Strict):
    """The devices of one hardware class."""

    devices: int = Field(ge=0, le=MAX_FLEET_DEVICES)
    sites: int = Field(default=1, ge=1, le=100_000)
    """devices spread round-robin over this many ``site`` label values (``<class>-site-<n>``)"""
    device_ids: list[str] = Field(default_factory=list, max_length=MAX_FLEET_DEVICES)
    """optional names (the dry run uses the real ids); default ``<class>-<n>``"""
    site_labels: list[str] = Field(default_factory=list, max_length=MAX_FLEET_DEVICES)
    offline: list[bool] = Field(default_factory=list, max_length=MAX_FLEET_DEVICES)
    """optional, per device: offline for the whole run (the dry run's currently silent devices)"""
    poll_s: float = Field(default=60.0, gt=0, le=7 * 86400)
    outages: Outages = Field(default_factory=Outages)
    link: LinkSpeed = Field(default_factory=LinkSpeed)
    artifact_bytes: int = Field(default=10_000_000, ge=0, le=100_000_000_000)
    install_s: float = Field(default=10.0, ge=0, le=86400)
    install_failure_rate: float = Field(default=0.0, ge=0, le=1)
    throttle_share: float = Field(default=0.0, ge=0, le=1)
    """share of the class's devices that throttle under heat (their latency is ``throttle_factor`` x)"""
    throttle_factor: float = Field(default=2.0, ge=1, le=100)
    requests_per_s: float = Field(default=1.0, ge=0, le=100_000)
    """inference requests per device per second while online"""
    envelope_p95_ms: float | None = Field(default=None, gt=0)
    """the class's ``performance.latency_p95_ms``; ``None``: no envelope"""
    update_window: str = "any"
    """``protocol.update_window``'s syntax and rule (the agent's): local windows in ``timezone``"""
    timezone: str = "UTC"
    """the devices' IANA zone (their update window's clock)"""
    update_windows: list[str] = Field(default_factory=list, max_length=MAX_FLEET_DEVICES)
    """optional, per device: its window (the dry run applies the class's per-label overrides)"""
    timezones: list[str] = Field(default_factory=list, max_length=MAX_FLEET_DEVICES)
    """optional, per device: its zone (the dry run uses the zone each device reported)"""
    current: ModelFigures = Field(default_factory=ModelFigures)
    candidate: ModelFigures = Field(default_factory=ModelFigures)

    @field_validator("update_window")
    @classmethod
    def _window(cls, value: str) -> str:
        try:
            parse_update_window(value)
        except InvalidDocumentError as exc:
            raise ValueError(f"{exc.message}; expected {exc.details.get('expected')}") from exc
        return value

    @field_validator("update_windows")
    @classmethod
    def _windows(cls, values: list[str]) -> list[str]:
        for value in set(values):
            cls._window(value)
        return values

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            check_zone(value)
        except InvalidDocumentError as exc:
            raise ValueError(exc.message) from exc
        return value

    @model_validator(mode="after")
    def _per_device_lists(self) -> ClassFleet:
        for name in ("device_ids", "site_labels", "offline", "timezones", "update_windows"):
            values = getattr(self, name)
            if values and len(values) != self.devices:
                raise ValueError(f"{name} has {len(values)} entries for {self.devices} devices")
        return self

    def window(self) -> UpdateWindow | None:
        return parse_update_window(self.update_window)


class Scenario(_Strict):
    bad_model: bool = False
    """the candidate is known to be bad: exposure figures are exposure to a bad model"""
    bad_classes: list[str] = Field(default_factory=list)
    """classes on which the candidate is bad (default: every class, when ``bad_model``)"""


class FleetSpec(_Strict):
    name: str = Field(default="fleet", max_length=200)
    seed: int = Field(default=0, ge=0)
    start_at: datetime = Field(default=datetime(2026, 1, 5, tzinfo=timezone.utc))
    horizon_s: float = Field(default=WEEK_S, gt=0, le=366 * 86400)
    tick_s: float = Field(default=60.0, gt=0, le=86400)
    """how often the engine decides, in virtual time (the real engine ticks every ``rollout_tick_s``)"""
    telemetry_s: float = Field(default=60.0, gt=0, le=86400)
    """how often the server's view of the new version's health changes (the devices' telemetry window)"""
    classes: dict[str, ClassFleet] = Field(min_length=1, max_length=64)
    scenario: Scenario = Field(default_factory=Scenario)
    notes: list[str] = Field(default_factory=list)
    """what the fleet description could not know (the dry run says what it assumed)"""

    @field_validator("start_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)

    @model_validator(mode="after")
    def _known_classes(self) -> FleetSpec:
        total = sum(c.devices for c in self.classes.values())
        if total > MAX_FLEET_DEVICES:
            raise ValueError(f"{total} devices; at most {MAX_FLEET_DEVICES}")
        return self

    @property
    def devices(self) -> int:
        return sum(c.devices for c in self.classes.values())


def parse_fleet(data: Any, *, known_classes: set[str] | None = None) -> FleetSpec:
    """Validate a fleet description, or raise ``invalid_fleet`` naming the first bad field.

    With ``known_classes`` (a classes file's, or the control plane's), a class outside it is refused with
    ``unknown_hardware_class``."""
    try:
        fleet = FleetSpec.model_validate(data)
    except ValidationError as exc:
        errors = validation_details(exc)
        first = errors[0]
        raise InvalidDocumentError(
            f"invalid fleet: {first['field'] or 'fleet'}: {first['expected']}",
            code="invalid_fleet",
            details={"field": first["field"], "expected": first["expected"], "got": first["got"],
                     "errors": errors},
        ) from exc  # fmt: skip
    unknown = [c for c in fleet.scenario.bad_classes if c not in fleet.classes]
    if unknown:
        raise InvalidDocumentError(
            f"invalid fleet: scenario.bad_classes: {unknown[0]} is not a class of this fleet",
            code="invalid_fleet",
            details={"field": "scenario.bad_classes", "expected": sorted(fleet.classes), "got": unknown},
        )
    if known_classes is not None:
        unknown = sorted(set(fleet.classes) - known_classes)
        if unknown:
            raise InvalidDocumentError(
                f"invalid fleet: classes.{unknown[0]}: no such hardware class",
                code="unknown_hardware_class",
                details={"field": f"classes.{unknown[0]}", "expected": sorted(known_classes), "got": unknown},
            )
    return fleet


def with_class_documents(fleet: FleetSpec, documents: Mapping[str, HardwareClass]) -> FleetSpec:
    """The fleet checked against a classes file: a class it does not declare is refused
    (``unknown_hardware_class``, naming the field), and a class's envelope and update window come from its
    document where the fleet file leaves them out."""
    unknown = sorted(set(fleet.classes) - set(documents))
    if unknown:
        raise InvalidDocumentError(
            f"invalid fleet: classes.{unknown[0]}: no such hardware class in the classes file",
            code="unknown_hardware_class",
            details={"field": f"classes.{unknown[0]}", "expected": sorted(documents), "got": unknown},
        )
    classes = {}
    for name, cls in fleet.classes.items():
        doc = documents[name]
        updates: dict[str, Any] = {}
        if "envelope_p95_ms" not in cls.model_fields_set:
            updates["envelope_p95_ms"] = doc.performance.latency_p95_ms
        if "update_window" not in cls.model_fields_set:
            try:
                UpdateWindow.parse(doc.update_window)
                updates["update_window"] = doc.update_window
            except ValueError:
                pass
        classes[name] = cls.model_copy(update=updates)
    return fleet.model_copy(update={"classes": classes})


def parse_fleet_toml(text: str | bytes, *, known_classes: set[str] | None = None) -> FleetSpec:
    raw = text.encode("utf-8") if isinstance(text, str) else text
    if len(raw) > MAX_FLEET_FILE_BYTES:
        raise InvalidDocumentError(
            "fleet file too large", code="document_too_large", expected=MAX_FLEET_FILE_BYTES, got=len(raw)
        )
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidDocumentError(
            f"fleet file is not valid TOML: {exc}", code="malformed_toml", expected="TOML", got=str(exc)
        ) from exc
    return parse_fleet(data, known_classes=known_classes)
