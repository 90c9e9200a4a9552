"""The edgefleet fields signed into each TUF target's ``custom`` (by the offline release key).

They bind a file to its model, version, hardware class and release counter, so a device can refuse an
assignment for another class or below its release floor using only signed data.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationError
from tuf.api.metadata import TargetFile

from edgefleet.protocol.document import Name, Part, Sha256Hex, validation_details
from edgefleet.protocol.errors import InvalidDocumentError

__all__ = [
    "CUSTOM_KEY",
    "DELTAS_DIR",
    "DELTA_SUFFIX",
    "DeltaCustom",
    "TargetCustom",
    "custom_of",
    "delta_target_path",
    "is_delta_path",
    "target_prefix",
]

CUSTOM_KEY = "edgefleet"
DELTAS_DIR = "deltas"
DELTA_SUFFIX = ".efdelta"


class DeltaCustom(Part):
    """Signed into a delta target's ``custom.edgefleet.delta`` (``edgefleet.trust.delta``): the full target
    it is built from and the full target it rebuilds, each by path, sha256 and length."""

    base_path: str = Field(min_length=1, max_length=1024)
    base_sha256: Sha256Hex
    base_length: int = Field(ge=0)
    result_path: str = Field(min_length=1, max_length=1024)
    result_sha256: Sha256Hex
    result_length: int = Field(ge=0)
    encoding: str = Field(min_length=1, max_length=32)


class TargetCustom(Part):
    model: Name
    version: Name
    hardware_class: Name
    release_counter: int = Field(ge=0)
    runtime: str = Field(min_length=1, max_length=64)
    manifest_sha256: Sha256Hex
    latency_unmeasured_accepted: bool = Field(
        default=False,
        description="the publisher released it although its manifest says the class's latency was not "
        "measured (edgefleet publish --accept-unmeasured-latency); written only when true",
    )

    delta: DeltaCustom | None = Field(
        default=None, description="set on a delta target only: what it rebuilds, from what (written when set)"
    )

    def to_custom(self) -> dict[str, Any]:
        exclude: set[str] = set()
        if not self.latency_unmeasured_accepted:
            exclude.add("latency_unmeasured_accepted")
        if self.delta is None:
            exclude.add("delta")
        return {CUSTOM_KEY: self.model_dump(mode="json", exclude=exclude)}


def target_prefix(model: str, version: str, hardware_class: str) -> str:
    """Every file of one artifact lives under ``<model>/<version>/<hardware_class>/``."""
    return f"{model}/{version}/{hardware_class}"


def delta_target_path(prefix: str, file_path: str, base_sha256: str) -> str:
    """Where the delta rebuilding ``<prefix>/<file_path>`` from the file with ``base_sha256`` is published."""
    return f"{prefix}/{DELTAS_DIR}/{base_sha256}/{file_path}{DELTA_SUFFIX}"


def is_delta_path(path: str) -> bool:
    """A target path that names a delta (under a ``deltas/<sha256>/`` directory, ending ``.efdelta``)."""
    return f"/{DELTAS_DIR}/" in path and path.endswith(DELTA_SUFFIX)


def custom_of(info: TargetFile) -> TargetCustom:
    """Parse and check a target's signed custom fields; its path must sit under the artifact's prefix."""
    custom = info.custom
    raw = custom.get(CUSTOM_KEY) if isinstance(custom, dict) else None
    if not isinstance(raw, dict):
        raise InvalidDocumentError(
            "target has no edgefleet custom fields",
            code="invalid_target_custom",
            expected=f"custom.{CUSTOM_KEY} object",
            got=info.path,
        )
    try:
        parsed = TargetCustom.model_validate(raw)
    except ValidationError as exc:
        raise InvalidDocumentError(
            "invalid edgefleet custom fields",
            code="invalid_target_custom",
            details={"errors": validation_details(exc), "path": info.path},
        ) from exc
    prefix = target_prefix(parsed.model, parsed.version, parsed.hardware_class) + "/"
    if not info.path.startswith(prefix):
        raise InvalidDocumentError(
            "target path does not match its signed model/version/class",
            code="invalid_target_custom",
            expected=prefix + "...",
            got=info.path,
        )
    return parsed
