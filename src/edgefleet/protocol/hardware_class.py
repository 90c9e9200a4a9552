"""Hardware classes: named deployment targets and their budgets (ARCHITECTURE 2)."""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, field_validator

from edgefleet.protocol.class_rules import (
    MAX_WINDOW_OVERRIDES,
    checked_cpu_features,
    checked_window,
    device_window,
)
from edgefleet.protocol.document import Document, Name, Part
from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.protocol.runtime_names import EXECUTION_PROVIDERS, PRECISIONS, providers_problem
from edgefleet.protocol.selector import KEY_PATTERN
from edgefleet.protocol.update_window import WINDOW_SYNTAX, parse_update_window

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "EXECUTION_PROVIDERS",
    "MAX_WINDOW_OVERRIDES",
    "PRECISIONS",
    "Budgets",
    "HardwareClass",
    "Performance",
    "RuntimeSpec",
    "Threads",
    "WindowOverride",
    "check_windows_to_apply",
    "device_window",
    "parse_classes_toml",
]

Precision = Literal["fp32", "fp16", "int8"]
MAX_CLASSES_FILE_BYTES = 1_000_000


class RuntimeSpec(Part):
    name: Literal["onnxruntime", "openvino", "litert"] = "onnxruntime"
    min_version: str = "1.16"
    execution_providers: list[str] = Field(default_factory=lambda: ["CPUExecutionProvider"], min_length=1)

    @field_validator("execution_providers")
    @classmethod
    def _known_providers(cls, value: list[str]) -> list[str]:
        problem = providers_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value


class Threads(Part):
    intra_op: int = Field(default=1, ge=1, le=256)
    inter_op: int = Field(default=1, ge=1, le=64)


class Budgets(Part):
    ram_mb: int = Field(gt=0)
    storage_mb: int = Field(gt=0)
    max_model_mb: float = Field(gt=0)
    cpu_cores: float | None = Field(
        default=None,
        gt=0,
        le=1024,
        description="CPU time the model may use, in cores (a cgroup cpu.max quota); None: threads.intra_op",
    )
    storage_read_mb_s: float | None = Field(
        default=None,
        gt=0,
        le=100_000,
        description="sequential read speed of the class's storage (MB/s): the build reads the model at it "
        "to measure load time and first inference; None: not declared",
    )


class Performance(Part):
    latency_p95_ms: float = Field(gt=0, description="batch 1, after warm-up")
    max_batch: int = Field(default=1, ge=1, le=4096)
    load_time_ms: float | None = Field(
        default=None, gt=0, description="budget for creating the runtime session from the file; None: none"
    )
    sustained_latency_p95_ms: float | None = Field(
        default=None,
        gt=0,
        le=3_600_000,
        description="budget for the p95 of the last window (minute) of a run under sustained load, batch 1; "
        "judged on devices' or emulated figures, never the build host's; None: none",
    )


_LABEL_KEY = re.compile(KEY_PATTERN)


class WindowOverride(Part):
    """A class's update window for the devices whose labels match ``labels`` (all of them, exactly)."""

    labels: dict[str, str] = Field(min_length=1, max_length=16, description="a label selector; never empty")
    update_window: str

    @field_validator("update_window")
    @classmethod
    def _window(cls, value: str) -> str:
        return checked_window(value)


class HardwareClass(Document):
    """A named deployment target. Operators apply these from a TOML file."""

    @classmethod
    def parse(cls, data: Any) -> HardwareClass:
        """``Document.parse``, with a window that does not parse refused as ``invalid_update_window`` (and
        an empty override selector as ``empty_selector``), naming the field."""
        if isinstance(data, dict):
            _precheck_windows(data)
        return super().parse(data)

    @field_validator("cpu_features")
    @classmethod
    def _flag_names(cls, value: list[str] | None) -> list[str] | None:
        return checked_cpu_features(value)

    KIND = "hardware class"

    name: Name
    description: str = ""
    cpu_arch: Literal["x86_64", "aarch64", "armv7l", "riscv64"]
    accelerator: str = "none"
    objective: Literal["latency", "size", "balanced"] = Field(
        default="latency",
        description="what the build optimizes once every hard budget holds: latency, model size, or both",
    )
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec)
    precisions: list[Precision] = Field(default_factory=lambda: list[Precision](["fp32"]), min_length=1)
    supported_ops: list[str] = Field(default_factory=list, description="empty: all ops of the runtime")
    cpu_features: list[str] | None = Field(
        default=None,
        description="the devices' CPU flags as /proc/cpuinfo names them (e.g. avx2, avx512_vnni, asimddp); "
        "None: unknown, and the build assumes the most conservative CPU of the arch",
    )
    threads: Threads = Field(default_factory=Threads)
    budgets: Budgets
    performance: Performance
    thermal_notes: str = ""
    power_w: float | None = Field(default=None, gt=0)
    connectivity: Literal["always", "intermittent", "rare"] = "intermittent"
    update_window: str = Field(
        default="any",
        description="when an installed update may switch, in the device's time zone: e.g. '22:00-05:00 "
        "local', 'sun 01:00-05:00', '02:00-04:00 utc' or 'any' (edgefleet.protocol.update_window)",
    )
    window_overrides: list[WindowOverride] = Field(
        default_factory=list,
        max_length=MAX_WINDOW_OVERRIDES,
        description="per-label windows: the first entry whose labels all match the device's wins",
    )
    telemetry_bytes_per_s: int = Field(default=2048, gt=0)
    download_bytes_per_s: int | None = Field(
        default=None,
        gt=0,
        description="the most an update download (full files and deltas) may use of the link; None: no cap",
    )

    @field_validator("update_window")
    @classmethod
    def _window(cls, value: str) -> str:
        return checked_window(value)

    def window_for(self, labels: Mapping[str, str]) -> str:
        """The window text for a device with ``labels``: the first matching override, else the class's."""
        return device_window(self.model_dump(mode="json"), labels)


def check_windows_to_apply(doc: HardwareClass) -> None:
    """What an operator applies, beyond what parses (stored documents keep parsing as before): an empty
    window text is refused (``invalid_update_window``: omit ``update_window`` for any time), and so is an
    override label key no device label can have (``invalid_labels``: the label key grammar of
    ``protocol.selector``), since that override could never match. Both name the field."""
    windows = [("update_window", doc.update_window)]
    for i, override in enumerate(doc.window_overrides):
        windows.append((f"window_overrides.{i}.update_window", override.update_window))
        bad = sorted(k for k in override.labels if not _LABEL_KEY.fullmatch(k))
        if bad:
            raise InvalidDocumentError(
                f"{doc.name}: window_overrides.{i}.labels: no device label can have the key {bad[0][:80]!r}",
                code="invalid_labels",
                expected=f"label keys matching {KEY_PATTERN}",
                got=[k[:80] for k in bad],
                details={"field": f"window_overrides.{i}.labels"},
            )
    for field_name, text in windows:
        if not text.strip():
            raise InvalidDocumentError(
                f"{doc.name}: {field_name} is empty", code="invalid_update_window",
                expected=f"{WINDOW_SYNTAX}; leave update_window out for any time", got=text,
                details={"field": field_name},
            )  # fmt: skip


def _precheck_windows(data: dict[str, Any]) -> None:
    fields: list[tuple[str, Any]] = [("update_window", data.get("update_window", "any"))]
    overrides = data.get("window_overrides")
    if isinstance(overrides, list):
        for i, entry in enumerate(overrides):
            if not isinstance(entry, dict):
                continue
            labels = entry.get("labels")
            if isinstance(labels, dict) and not labels:
                raise InvalidDocumentError(
                    f"window_overrides.{i}.labels is empty: it would match every device",
                    code="empty_selector",
                    expected="at least one label=value",
                    got={},
                    details={"field": f"window_overrides.{i}.labels"},
                )
            fields.append((f"window_overrides.{i}.update_window", entry.get("update_window", "")))
    for field_name, value in fields:
        if not isinstance(value, str):
            continue
        try:
            parse_update_window(value)
        except InvalidDocumentError as exc:
            exc.details["field"] = field_name
            exc.message = f"{field_name}: {exc.message}"
            exc.args = (exc.message,)
            raise


def parse_classes_toml(text: str | bytes) -> list[HardwareClass]:
    """Parse a classes file: ``[class.<name>]`` tables, each a hardware class.

    Raises ``InvalidDocumentError`` (code ``malformed_toml`` or ``invalid_document``) naming the class.
    """
    raw = text.encode("utf-8") if isinstance(text, str) else text
    if len(raw) > MAX_CLASSES_FILE_BYTES:
        raise InvalidDocumentError(
            "classes file too large", code="document_too_large", expected=MAX_CLASSES_FILE_BYTES, got=len(raw)
        )
    try:
        data: dict[str, Any] = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidDocumentError(
            f"classes file is not valid TOML: {exc}", code="malformed_toml", expected="TOML", got=str(exc)
        ) from exc
    version = data.get("schema_version", HardwareClass.SCHEMA_VERSION)
    tables = data.get("class")
    if not isinstance(tables, dict) or not tables:
        raise InvalidDocumentError(
            "classes file has no [class.<name>] tables", expected="[class.<name>] tables", got=sorted(data)
        )
    out: list[HardwareClass] = []
    for name, body in tables.items():
        if not isinstance(body, dict):
            raise InvalidDocumentError(
                f"class {name!r} must be a table", expected="table", got=type(body).__name__
            )
        try:
            out.append(HardwareClass.parse({"schema_version": version, **body, "name": name}))
        except InvalidDocumentError as exc:
            exc.message = f"class {name!r}: {exc.message}"
            exc.args = (exc.message,)
            raise
    return out
