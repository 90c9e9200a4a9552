"""Does an artifact fit its hardware class? A pure decision, table-tested."""

from __future__ import annotations

import re
from typing import Any

from edgefleet.protocol import ArtifactManifest, HardwareClass
from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.protocol.hardware_class import RuntimeSpec

__all__ = ["BYTES_PER_MB", "check_device_runs", "check_fits", "version_tuple"]

BYTES_PER_MB = 1024 * 1024
"""Class budgets are in MiB: ``max_model_mb = 25`` allows 26 214 400 bytes."""


def version_tuple(version: str) -> tuple[int, ...]:
    """``"1.16.3"`` -> ``(1, 16, 3)``; non-numeric tails are ignored (``"1.18rc1"`` -> ``(1, 18)``)."""
    out: list[int] = []
    for part in version.split(".")[:8]:
        match = re.match(r"\d+", part)
        if not match:
            break
        out.append(int(match.group()))
    return tuple(out)


def check_fits(manifest: ArtifactManifest, hw: HardwareClass) -> None:
    """Raise ``InvalidDocumentError`` with a specific code if the build cannot run on the class."""
    if manifest.hardware_class != hw.name:
        raise InvalidDocumentError(
            "manifest names another class",
            code="class_mismatch",
            expected=hw.name,
            got=manifest.hardware_class,
        )
    limit = int(hw.budgets.max_model_mb * BYTES_PER_MB)
    if manifest.total_bytes > limit:
        raise InvalidDocumentError(
            f"artifact is larger than the class's model budget ({hw.budgets.max_model_mb} MiB)",
            code="exceeds_budget",
            expected=f"<= {limit} bytes",
            got=manifest.total_bytes,
        )
    if manifest.runtime.name != hw.runtime.name:
        raise InvalidDocumentError(
            "artifact needs another runtime",
            code="runtime_mismatch",
            expected=hw.runtime.name,
            got=manifest.runtime.name,
        )
    if version_tuple(manifest.runtime.min_version) > version_tuple(hw.runtime.min_version):
        raise InvalidDocumentError(
            "artifact needs a newer runtime than the class guarantees",
            code="runtime_mismatch",
            expected=f"min_version <= {hw.runtime.min_version}",
            got=manifest.runtime.min_version,
        )
    if manifest.precision not in hw.precisions:
        raise InvalidDocumentError(
            "the class does not support this precision",
            code="precision_unsupported",
            expected=list(hw.precisions),
            got=manifest.precision,
        )
    foreign = [p for p in manifest.runtime.execution_providers if p not in hw.runtime.execution_providers]
    if foreign:
        raise InvalidDocumentError(
            "artifact names execution providers the class does not have",
            code="provider_unsupported",
            expected=list(hw.runtime.execution_providers),
            got=foreign,
        )


def check_device_runs(runtime: RuntimeSpec, runtimes: dict[str, Any] | None) -> None:
    """Pure: raise ``InvalidDocumentError`` when the device's reported runtime inventory cannot run an
    artifact whose manifest names ``runtime``: that runtime is not installed (``device_lacks_runtime``),
    older than the manifest's ``min_version`` (``device_runtime_too_old``), or none of the artifact's
    execution providers is usable there (``device_lacks_provider``; one is enough: the rest is the
    degraded ladder's job).
    ``runtimes`` is ``None`` for a device that has not reported an inventory (an older agent): not judged."""
    if runtimes is None:
        return
    have = runtimes.get(runtime.name)
    if not isinstance(have, dict):
        raise InvalidDocumentError(
            f"the device has no {runtime.name} runtime",
            code="device_lacks_runtime",
            expected=runtime.name,
            got=sorted(runtimes),
        )
    version = str(have.get("version", ""))
    if version_tuple(version) < version_tuple(runtime.min_version):
        raise InvalidDocumentError(
            f"the device's {runtime.name} is older than the artifact needs",
            code="device_runtime_too_old",
            expected=f">= {runtime.min_version}",
            got=version,
        )
    usable = list(have.get("execution_providers") or [])
    if not any(p in usable for p in runtime.execution_providers):
        raise InvalidDocumentError(
            "none of the artifact's execution providers is available on the device",
            code="device_lacks_provider",
            expected=list(runtime.execution_providers),
            got=usable,
        )
