"""Which runtime adapter loads an artifact: the one its manifest's ``runtime.name`` names.

Adapters are imported lazily, so a device without OpenVINO pays nothing for it; a runtime this device does
not have (unknown name, or its package not installed) is ``runtime_unsupported``, an ordinary load failure
(the installer reports it, the serving ladder skips the rung), never an ``ImportError`` in the agent.
"""

from __future__ import annotations

import threading

from edgefleet.agent.runtime.base import RuntimeAdapter
from edgefleet.agent.serve.errors import NoModelError
from edgefleet.protocol.runtimes import SERVABLE_RUNTIMES

__all__ = ["SUPPORTED_RUNTIMES", "RuntimeAdapters", "adapter_for"]

SUPPORTED_RUNTIMES = SERVABLE_RUNTIMES


def adapter_for(runtime: str) -> RuntimeAdapter:
    """A new adapter for a manifest's ``runtime.name``."""
    try:
        if runtime == "onnxruntime":
            from edgefleet.agent.runtime.ort import OnnxRuntimeAdapter

            return OnnxRuntimeAdapter()
        if runtime == "openvino":
            from edgefleet.agent.runtime.openvino_native import OpenVinoAdapter

            return OpenVinoAdapter()
        if runtime == "litert":
            from edgefleet.agent.runtime.litert import LiteRtAdapter

            return LiteRtAdapter()
    except ImportError as exc:
        raise NoModelError(
            f"runtime {runtime!r} is not installed on this device: {exc}",
            code="runtime_unsupported",
            expected=f"the {runtime} package (pip install edgefleet[{runtime}])",
            got=str(exc)[:200],
        ) from exc
    raise NoModelError(
        f"no adapter for runtime {runtime!r} on this device",
        code="runtime_unsupported",
        expected=list(SUPPORTED_RUNTIMES),
        got=runtime,
    )


class RuntimeAdapters:
    """``adapter_for`` with one adapter per runtime, made on first use and shared after (an OpenVINO
    ``Core`` is costly to create). Thread-safe; what ``agent run`` hands the installer and the serving."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._adapters: dict[str, RuntimeAdapter] = {}

    def __call__(self, runtime: str) -> RuntimeAdapter:
        with self._lock:
            adapter = self._adapters.get(runtime)
            if adapter is None:
                adapter = self._adapters[runtime] = adapter_for(runtime)
            return adapter
