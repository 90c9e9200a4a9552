"""Device inventory: the bounded summary a report's OS, CPU and runtimes become, and the fleet filter on it.

The summary is what fleet views filter on (a small JSON column, not the whole report)::

    {"os": "linux", "os_version": "Debian GNU/Linux 12", "arch": "aarch64", "cpu_model": "...",
     "cores": 8, "python": "3.11.7", "runtimes": {"onnxruntime": "1.20.1"},
     "providers": ["CPUExecutionProvider", ...]}

A filter is a set of exact matches; ``runtime`` is ``name`` (installed) or ``name=version``; ``provider``
is an execution provider some installed runtime can use here. Filters are judged here only, by ``matches``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from edgefleet.protocol.errors import InvalidDocumentError

__all__ = ["MAX_SUMMARY_PROVIDERS", "InventoryFilter", "inventory_summary", "parse_inventory_filter"]

MAX_SUMMARY_PROVIDERS = 32
_TEXT = re.compile(r"^[A-Za-z0-9._:/@+ ()-]{1,128}$")


@dataclass(frozen=True)
class InventoryFilter:
    os: str | None = None
    arch: str | None = None
    agent_version: str | None = None
    runtime: str | None = None
    runtime_version: str | None = None
    provider: str | None = None

    def __bool__(self) -> bool:
        return any(
            v is not None for v in (self.os, self.arch, self.agent_version, self.runtime, self.provider)
        )

    def matches(self, summary: dict[str, Any] | None, agent_version: str) -> bool:
        """Pure: whether a device with this inventory summary and agent version passes every filter. A
        device that has not reported an inventory passes none of the inventory filters."""
        if self.agent_version is not None and agent_version != self.agent_version:
            return False
        s = summary or {}
        if self.os is not None and s.get("os") != self.os:
            return False
        if self.arch is not None and s.get("arch") != self.arch:
            return False
        runtimes = s.get("runtimes") or {}
        if self.runtime is not None:
            if self.runtime not in runtimes:
                return False
            if self.runtime_version is not None and runtimes[self.runtime] != self.runtime_version:
                return False
        return self.provider is None or self.provider in (s.get("providers") or [])


def parse_inventory_filter(
    *,
    os: str | None = None,
    arch: str | None = None,
    agent_version: str | None = None,
    runtime: str | None = None,
    provider: str | None = None,
) -> InventoryFilter:
    """Pure: the filter the query asks for, or ``invalid_inventory_filter``."""
    runtime_name, _, runtime_version_text = (runtime or "").partition("=")
    for name, value in (
        ("os", os),
        ("arch", arch),
        ("agent_version", agent_version),
        ("runtime", runtime_name if runtime is not None else None),
        ("runtime", runtime_version_text or None),
        ("provider", provider),
    ):
        if value is not None and not _TEXT.fullmatch(value):
            raise InvalidDocumentError(
                f"invalid {name} filter",
                code="invalid_inventory_filter",
                expected=_TEXT.pattern,
                got=value[:200],
                details={"filter": name},
            )
    runtime_version: str | None = None
    if runtime is not None and "=" in runtime:
        runtime_version = runtime_version_text
        if not runtime_name or not runtime_version:
            raise InvalidDocumentError(
                "a runtime filter is name or name=version",
                code="invalid_inventory_filter",
                expected="onnxruntime or onnxruntime=1.20.1",
                got=runtime,
                details={"filter": "runtime"},
            )
    return InventoryFilter(
        os=os,
        arch=arch,
        agent_version=agent_version,
        runtime=runtime_name if runtime is not None else None,
        runtime_version=runtime_version,
        provider=provider,
    )


def inventory_summary(report: dict[str, Any]) -> dict[str, Any] | None:
    """Pure: the summary of a validated report's ``host`` and ``runtimes`` (``None`` when it has neither).
    Sizes are already bounded by the report's schema; providers are de-duplicated, sorted and capped."""
    host = report.get("host")
    runtimes = report.get("runtimes")
    if host is None and runtimes is None:
        return None
    out: dict[str, Any] = {}
    if isinstance(host, dict):
        cpu = host.get("cpu") or {}
        out.update(
            os=host.get("os", ""),
            os_version=host.get("os_version", ""),
            arch=cpu.get("arch", ""),
            cpu_model=cpu.get("model", ""),
            cores=cpu.get("cores", 0),
            python=host.get("python", ""),
        )
    if isinstance(runtimes, dict):
        out["runtimes"] = {name: str(r.get("version", "")) for name, r in sorted(runtimes.items())}
        providers = {p for r in runtimes.values() for p in (r.get("execution_providers") or [])}
        out["providers"] = sorted(providers)[:MAX_SUMMARY_PROVIDERS]
    return out
