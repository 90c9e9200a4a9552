"""A runtime adapter that loads and runs a model in a supervised child process (the trial worker).

``WorkerAdapter(runtime).load(...)`` starts ``python -m edgefleet.agent.runtime.worker_main``, which loads the
model with the ordinary adapter for ``runtime`` (``RuntimeAdapters``, or the factory named by ``spec``) and
answers ``predict`` calls over its stdin/stdout pipes. If the model crashes its runtime (a segfault, an abort,
the kernel's OOM killer), only the worker dies: the agent sees its exit status and reports the crash to
``on_death`` (the installer rolls the trial back and counts it) while it keeps serving. A worker whose agent
died ends with its input (the pipe's other end closes), and nobody is left to count its death: a power cut or
an agent restart is never a crash of the model.

Wire format, both ways: a 4-byte big-endian header length, a JSON header (with each tensor's name, dtype and
shape; no object dtypes), an 8-byte payload length and the tensors' raw bytes. The cost of that hop is what
``bench/serving.py`` prints as "trial worker"; committed versions are served in-process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

import numpy as np

from edgefleet.agent.runtime.base import InferenceFailedError, LoadOptions, ModelLoadError
from edgefleet.protocol.errors import EdgefleetError
from edgefleet.protocol.wire.manifest import Signature

__all__ = [
    "DEFAULT_SPEC",
    "ModelCrashedError",
    "WorkerAdapter",
    "WorkerModel",
    "describe_exit",
    "read_message",
    "write_message",
]

log = logging.getLogger("edgefleet.agent.runtime.worker")
DEFAULT_SPEC = "edgefleet.agent.serve.runtimes:RuntimeAdapters"
"""``module:attribute``: called with no argument it gives ``adapters(runtime) -> RuntimeAdapter``."""
MAX_HEADER_BYTES = 1 << 20
MAX_PAYLOAD_BYTES = 1 << 31
CLOSE_TIMEOUT_S = 5.0
DeathCallback = Callable[[str], None]


class ModelCrashedError(InferenceFailedError):
    """The worker process running the model died (``details.exit``: ``SIGSEGV``, ``SIGKILL``, ``exit 3``)."""

    code = "model_crashed"


def describe_exit(returncode: int | None) -> str:
    """Pure: a process exit status as the report says it (``SIGSEGV``, ``exit 1``)."""
    if returncode is None:
        return "running"
    if returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            return f"signal {-returncode}"
    return f"exit {returncode}"


def write_message(
    out: IO[bytes], header: dict[str, Any], arrays: Mapping[str, np.ndarray] | None = None
) -> None:
    """One message: the header (JSON, with each tensor's name, dtype and shape) and the tensors' raw bytes."""
    tensors, chunks = [], []
    for name, value in (arrays or {}).items():
        array = np.ascontiguousarray(value)
        if array.dtype.hasobject:
            raise ValueError(f"tensor {name!r} holds Python objects")
        tensors.append({"name": name, "dtype": array.dtype.str, "shape": list(array.shape)})
        chunks.append(array.tobytes())
    payload = b"".join(chunks)
    raw = json.dumps({**header, "tensors": tensors}).encode()
    out.write(struct.pack(">I", len(raw)) + raw + struct.pack(">Q", len(payload)) + payload)
    out.flush()


def _read_exact(src: IO[bytes], n: int) -> bytes:
    data = src.read(n) if n else b""
    if len(data) != n:
        raise EOFError("worker pipe closed")
    return data


def read_message(src: IO[bytes]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    (size,) = struct.unpack(">I", _read_exact(src, 4))
    if size > MAX_HEADER_BYTES:
        raise EOFError("worker header too large")
    header = json.loads(_read_exact(src, size))
    (length,) = struct.unpack(">Q", _read_exact(src, 8))
    if length > MAX_PAYLOAD_BYTES:
        raise EOFError("worker payload too large")
    payload = memoryview(bytearray(_read_exact(src, length)))  # writable arrays, like a runtime returns
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for tensor in header.pop("tensors", []):
        dtype = np.dtype(tensor["dtype"])
        if dtype.hasobject:
            raise ValueError("object tensors are not accepted")
        shape = tuple(int(d) for d in tensor["shape"])
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if offset + nbytes > len(payload):
            raise EOFError("worker payload shorter than its tensors")
        arrays[str(tensor["name"])] = np.frombuffer(payload[offset : offset + nbytes], dtype=dtype).reshape(
            shape
        )
        offset += nbytes
    return header, arrays


def _error_from(header: dict[str, Any], default: type[EdgefleetError]) -> EdgefleetError:
    code = str(header.get("code") or default.code)
    return default(str(header.get("message") or code), code=code, got=header.get("got"))


class WorkerModel:
    """A ``LoadedModel`` whose runs happen in the worker process (one at a time, in arrival order).
    Closed, cancelled or garbage-collected, it stops its worker; only a death it did not cause reaches
    ``on_death``."""

    def __init__(self, proc: subprocess.Popen[bytes], providers: tuple[str, ...], on_death: DeathCallback):
        self._proc = proc
        self._providers = providers
        self._lock = threading.Lock()
        self._local = threading.local()
        self._stopping = threading.Event()
        # The watcher holds the process and the flag, not this object: a model dropped without close() is
        # collected, and its __del__ stops the worker.
        threading.Thread(
            target=_watch, args=(proc, self._stopping, on_death), name="trial-worker-watch", daemon=True
        ).start()

    @property
    def providers(self) -> tuple[str, ...]:
        return self._providers

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def crashed(self) -> bool:
        """The worker died on its own (not stopped by ``close``/``cancel``): it answers nothing any more."""
        return self._proc.returncode is not None and not self._stopping.is_set()

    def hop_s(self) -> float:
        """The calling thread's last run's time between the processes (round trip minus the worker's own
        run): the supervision's cost, not the model's. Serving keeps it out of the model's latency."""
        return float(getattr(self._local, "hop_s", 0.0))

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._local.hop_s = 0.0
        sent = time.perf_counter()
        with self._lock:
            if self._stopping.is_set():
                raise InferenceFailedError("the model was cancelled", code="inference_cancelled")
            try:
                assert self._proc.stdin is not None
                assert self._proc.stdout is not None
                write_message(self._proc.stdin, {"op": "predict"}, inputs)
                header, arrays = read_message(self._proc.stdout)
            except (OSError, EOFError, ValueError) as exc:
                if self._stopping.is_set():
                    raise InferenceFailedError("the model was cancelled", code="inference_cancelled") from exc
                how = describe_exit(_wait(self._proc))
                raise ModelCrashedError(f"the model's worker process died ({how})", got=how) from exc
        if not header.get("ok"):
            raise _error_from(header, InferenceFailedError)
        run_s = header.get("run_s")
        if isinstance(run_s, float) and run_s >= 0.0:
            self._local.hop_s = max(0.0, time.perf_counter() - sent - run_s)
        return arrays

    def cancel(self) -> None:
        self._stopping.set()
        self._proc.kill()

    def close(self) -> None:
        self._stopping.set()
        try:
            if self._proc.stdin is not None:
                self._proc.stdin.close()
            self._proc.wait(CLOSE_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired):
            self._proc.kill()
            self._proc.wait()

    def __del__(self) -> None:  # a model dropped without close() must not leave its process behind
        stopping = getattr(self, "_stopping", None)
        if stopping is not None and self._proc.poll() is None:
            stopping.set()
            self._proc.kill()


def _watch(proc: subprocess.Popen[bytes], stopping: threading.Event, on_death: DeathCallback) -> None:
    returncode = proc.wait()
    _close_pipes(proc)
    if stopping.is_set():
        return
    how = describe_exit(returncode)
    log.error("event=trial_worker_died pid=%d exit=%s", proc.pid, how)
    try:
        on_death(how)
    except Exception:  # the callback must not end the watcher silently
        log.exception("event=trial_worker_death_callback_failed")


def _close_pipes(proc: subprocess.Popen[bytes]) -> None:
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            with contextlib.suppress(OSError, ValueError):
                pipe.close()


def _wait(proc: subprocess.Popen[bytes]) -> int | None:
    try:
        return proc.wait(CLOSE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


class WorkerAdapter:
    """A ``RuntimeAdapter`` for ``runtime`` that loads each model in a worker process of its own."""

    def __init__(
        self,
        runtime: str,
        *,
        on_death: DeathCallback | None = None,
        spec: str = DEFAULT_SPEC,
        python: str = sys.executable,
    ) -> None:
        self.name = runtime
        self._on_death = on_death or (lambda _how: None)
        self._spec = spec
        self._python = python

    def load(self, model_path: Path, signature: Signature, options: LoadOptions) -> WorkerModel:
        proc = subprocess.Popen(
            [self._python, "-m", "edgefleet.agent.runtime.worker_main"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        request = {
            "op": "load",
            "spec": self._spec,
            "runtime": self.name,
            "model_path": str(model_path),
            "signature": signature.to_dict(),
            "options": {**asdict(options), "execution_providers": list(options.execution_providers)},
        }
        try:
            assert proc.stdin is not None
            assert proc.stdout is not None
            write_message(proc.stdin, request)
            header, _ = read_message(proc.stdout)
        except (OSError, EOFError, ValueError) as exc:
            how = describe_exit(_wait(proc))
            _close_pipes(proc)
            raise ModelCrashedError(
                f"the model's worker process died while loading it ({how})", got=how
            ) from exc
        if not header.get("ok"):
            _wait_closed(proc)
            raise _error_from(header, ModelLoadError)
        providers = tuple(str(p) for p in header.get("providers") or ())
        return WorkerModel(proc, providers, self._on_death)


def _wait_closed(proc: subprocess.Popen[bytes]) -> None:
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()
    _wait(proc)
    _close_pipes(proc)
