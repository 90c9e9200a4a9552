"""The fetch child: ``python -m edgefleet.agent.install.fetch_child``, one TUF operation per process.

The resident agent never imports TUF, securesystemslib, cryptography or httpx for content: installs, probes
and director key rotations are rare, polls are frequent, so the agent starts this process for each of them
(``agent.install.child_fetcher``) and it exits when done. It reads one ``FetchRequest``
(``agent.install.child_wire``) on stdin, runs the TUF fetcher (``agent.install.content``) exactly as the
agent ran it in-process (same TUF checks, release floor, resumable verified downloads, atomic moves), writes
one JSON line on stdout and exits 0. An ``EdgefleetError`` is a reply like a result, and so is an
``OSError`` (the installer maps a full disk to ``disk_full`` as it always did); anything else is a crash:
a traceback on stderr and a non-zero exit, which the agent reports as ``fetch_child_failed``.

Files are written only where the in-process fetcher wrote them: ``<data dir>/tuf`` (metadata),
``<data dir>/downloads`` (resumable partial files, verified before they move on), ``<data dir>/manifests``
and the staging directory the agent named; nothing it writes is a slot's current version. The child dies
with the agent (``PR_SET_PDEATHSIG``), so an agent killed mid-install leaves no orphan writing behind it.
"""

from __future__ import annotations

import base64
import ctypes
import json
import logging
import os
import signal
import sys
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from edgefleet.agent.channel import skip_httpx_cli
from edgefleet.agent.datadir import DataDir, DeviceIdentity
from edgefleet.agent.install.child_wire import FetchRequest, error_to_json, event_to_json
from edgefleet.agent.install.fetch import ResolvedAssignment
from edgefleet.agent.install.manifest_cache import ManifestCache
from edgefleet.protocol.errors import EdgefleetError
from edgefleet.protocol.wire.base import read_document, read_part
from edgefleet.protocol.wire.desired_state import Assignment, TargetRef
from edgefleet.protocol.wire.manifest import ArtifactManifest
from edgefleet.trust.director import public_key_pem
from edgefleet.trust.events import ListSink

__all__ = ["main"]

MAX_REQUEST_BYTES = 1 << 20
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when the agent dies (Linux); exit now if it died before we could ask."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the agent's timeout still bounds us
        return
    if os.getppid() != parent_pid:
        os._exit(1)


def _run(request: FetchRequest, events: ListSink) -> dict[str, Any]:
    skip_httpx_cli()  # before httpx's first import, which the TUF fetcher makes
    import httpx

    from edgefleet.agent.install.content import TufArtifactFetcher
    from edgefleet.agent.install.download import DownloadPolicy

    ddir = DataDir(request.data_dir)
    now = datetime.fromisoformat(request.now)
    policy = DownloadPolicy(max_bytes_per_s=request.max_bytes_per_s, min_bytes_per_s=request.min_bytes_per_s)
    with httpx.Client(timeout=request.http_timeout_s, follow_redirects=False) as http:
        fetcher = TufArtifactFetcher(
            ddir,
            DeviceIdentity(**request.identity),
            client=http,
            now=lambda: now,
            events=events,
            policy=policy,
        )
        if request.operation == "director_keys":
            return {"pems": [public_key_pem(k) for k in fetcher.director_keys()]}
        if request.operation == "resolve":
            assignment = read_part(request.assignment, Assignment, kind="assignment")
            target = fetcher.resolve(assignment).target
            raw = ManifestCache(ddir.root).read(target)  # resolve verified and kept these very bytes
            if raw is None:
                raise RuntimeError("the verified manifest is not in the manifest cache")
            return {"manifest_b64": base64.b64encode(raw).decode()}
        resolved = request.resolved or {}
        files = fetcher.fetch(
            ResolvedAssignment(
                str(resolved["artifact_id"]),
                read_document(resolved["manifest"], ArtifactManifest, kind="artifact manifest"),
                read_part(resolved["target"], TargetRef, kind="target"),
            ),
            Path(str(request.staging_dir)),
        )
        transfer = fetcher.last_transfer
        return {
            "files": {name: str(path) for name, path in files.items()},
            "transfer": asdict(transfer) if transfer is not None else None,
        }


def main() -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    request = FetchRequest.from_json(json.loads(sys.stdin.buffer.read(MAX_REQUEST_BYTES)))
    _die_with_parent(request.agent_pid)
    events = ListSink()
    reply: dict[str, Any] = {}
    try:
        reply["ok"] = _run(request, events)
    except EdgefleetError as exc:
        reply["error"] = error_to_json(exc)
    except OSError as exc:
        reply["os_error"] = {"errno": exc.errno, "message": str(exc)}
    reply["events"] = [event_to_json(e) for e in events.events]
    sys.stdout.write(json.dumps(reply, default=str) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
