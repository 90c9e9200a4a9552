"""What this device can run: each inference runtime installed, its version and the execution providers it
can really use here (the device report carries it; the control plane refuses assignments it cannot run).

Finding out means importing every runtime (OpenVINO alone is tens of MiB resident), so ``agent run`` asks a
short-lived child process (``python -m edgefleet.agent.runtime.inventory``) once, off the serving path: the
agent's own memory holds only the runtime its model needs. The child imports every runtime (about 2 s of CPU
and 115 MiB resident at its peak on the build host), so ``agent run`` starts it ``INVENTORY_DELAY_S`` after
serving is up, not at start: it does not compete with the first inference for the CPU or add to the memory
peak while the model loads. Reports carry ``runtimes: null`` until it has answered (the next report after
that carries them).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from typing import Any

__all__ = ["INVENTORY_DELAY_S", "InventoryProbe", "inventory_in_subprocess", "probe_inventory"]

log = logging.getLogger("edgefleet.agent.runtime")

_OPENVINO_ACCELERATORS = ("GPU", "NPU")
INVENTORY_DELAY_S = 5.0
"""Seconds ``agent run`` waits after serving is up before it starts the inventory child."""


def _onnxruntime() -> dict[str, Any]:
    import onnxruntime as ort

    return {"version": ort.__version__, "execution_providers": list(ort.get_available_providers())}


def _openvino() -> dict[str, Any]:
    import openvino as ov

    devices = list(ov.Core().available_devices)
    providers = ["CPUExecutionProvider"] if "CPU" in devices else []
    if any(d.split(".")[0] in _OPENVINO_ACCELERATORS for d in devices):
        providers.insert(0, "OpenVINOExecutionProvider")
    return {"version": ov.__version__.split("-")[0], "execution_providers": providers, "devices": devices}


def _litert() -> dict[str, Any]:
    from importlib import metadata  # here, in the inventory child: ~0.5 MiB the resident agent does not hold

    from ai_edge_litert.interpreter import Interpreter  # noqa: F401  # importable, not only installed

    return {"version": metadata.version("ai-edge-litert"), "execution_providers": ["CPUExecutionProvider"]}


_PROBES = {"onnxruntime": _onnxruntime, "openvino": _openvino, "litert": _litert}


def probe_inventory() -> dict[str, dict[str, Any]]:
    """In this process: every runtime that imports, with its version and usable providers."""
    out: dict[str, dict[str, Any]] = {}
    for name, probe in _PROBES.items():
        try:
            out[name] = probe()
        except Exception as exc:  # not installed, or broken: not in the inventory
            log.debug("event=runtime_absent runtime=%s error=%s", name, exc)
    return out


def inventory_in_subprocess(timeout_s: float = 120.0) -> dict[str, dict[str, Any]] | None:
    """``probe_inventory`` in a child process; ``None`` when it fails (the report then says nothing)."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "edgefleet.agent.runtime.inventory"],
            capture_output=True,
            timeout=timeout_s,
            check=True,
        )
        data = json.loads(done.stdout.decode("utf-8").strip().splitlines()[-1])
    except (subprocess.SubprocessError, OSError, ValueError, IndexError) as exc:
        log.warning("event=runtime_inventory_failed error=%s", str(exc)[:200])
        return None
    return data if isinstance(data, dict) else None


class InventoryProbe:
    """Runs ``inventory_in_subprocess`` once in a background thread, ``delay_s`` after ``start()`` (a set
    ``stop`` during the delay cancels it); ``get()`` is ``None`` until it ends."""

    def __init__(self, *, delay_s: float = 0.0, stop: threading.Event | None = None) -> None:
        self._result: dict[str, dict[str, Any]] | None = None
        self._delay_s = delay_s
        self._stop = stop or threading.Event()
        self._thread = threading.Thread(target=self._run, name="runtime-inventory", daemon=True)

    def start(self) -> InventoryProbe:
        self._thread.start()
        return self

    def _run(self) -> None:
        if self._delay_s > 0 and self._stop.wait(self._delay_s):
            return
        self._result = inventory_in_subprocess()

    def get(self) -> dict[str, dict[str, Any]] | None:
        return self._result

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)


if __name__ == "__main__":
    print(json.dumps(probe_inventory()))
