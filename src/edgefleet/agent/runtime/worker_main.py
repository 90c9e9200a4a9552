"""The trial worker process (``python -m edgefleet.agent.runtime.worker_main``): see ``runtime.worker``.

Reads one ``load`` request, loads the model with the adapter the spec names, then answers ``predict``
requests until its input ends: when its agent dies, the kernel closes the agent's end of the pipe and the
worker exits after the run in progress. (Not ``PR_SET_PDEATHSIG``: it fires when the *thread* that started the
worker ends, which in a running agent is an ordinary event, and would look like a crash.) Its stdout carries
only the protocol: anything a runtime prints goes to stderr.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from pathlib import Path
from typing import IO, Any

from edgefleet.agent.runtime.base import LoadOptions
from edgefleet.agent.runtime.worker import read_message, write_message
from edgefleet.protocol.errors import EdgefleetError
from edgefleet.protocol.wire.base import read_part
from edgefleet.protocol.wire.manifest import Signature


def _adapters(spec: str) -> Any:
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)()


def _error(exc: EdgefleetError) -> dict[str, Any]:
    return {
        "ok": False,
        "code": exc.code,
        "message": exc.message,
        "got": str(exc.details.get("got", ""))[:500],
    }


def serve(src: IO[bytes], out: IO[bytes]) -> int:
    try:
        request, _ = read_message(src)
    except EOFError:
        return 0
    try:
        options = request["options"]
        adapter = _adapters(request["spec"])(request["runtime"])
        model = adapter.load(
            Path(request["model_path"]),
            read_part(request["signature"], Signature, kind="signature"),
            LoadOptions(**{**options, "execution_providers": tuple(options["execution_providers"])}),
        )
    except EdgefleetError as exc:
        write_message(out, _error(exc))
        return 0
    write_message(out, {"ok": True, "providers": list(model.providers)})
    while True:
        try:
            _header, inputs = read_message(src)
        except EOFError:
            model.close()
            return 0
        started = time.perf_counter()
        try:
            outputs = model.predict(inputs)
        except EdgefleetError as exc:
            write_message(out, _error(exc))
            continue
        # the run's own time: the parent takes it apart from the hop between the processes
        write_message(out, {"ok": True, "run_s": time.perf_counter() - started}, outputs)


def main() -> int:
    protocol_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a runtime printing to stdout must not corrupt the protocol
    return serve(sys.stdin.buffer, protocol_out)


if __name__ == "__main__":
    sys.exit(main())
