"""The agent's content fetcher: each TUF operation in a short-lived child process (``fetch_child``).

Installs, probes and director key rotations are rare; the agent polls often and stays resident. So the
resident agent holds none of python-tuf, securesystemslib, cryptography (its Rust extension alone is about
10 MiB resident) or httpx for content: ``ChildFetcher`` implements the installer's ``ArtifactFetcher`` (and
the probe runner's ``BundleFetcher``) by starting ``python -m edgefleet.agent.install.fetch_child`` per call
(no shell), writing one request, reading one bounded JSON reply. This module imports none of them (a test
checks it in a fresh interpreter).

What stays the same as the in-process fetcher: the checks, the files (the child writes where the fetcher
always wrote), the error codes (an ``EdgefleetError`` in the child is raised here with the same code, as the
same class where the agent knows it, so a hash mismatch still refuses and a download failure is still
retried) and the security events (recorded here in order, with the child's timestamps). A resolve whose
manifest is already in the verified manifest cache starts no child at all.

What is new: a child that crashes, is killed, outlives its time limit or answers garbage raises
``FetchChildFailedError`` (``fetch_child_failed``, a retryable download failure) saying its exit status and
the tail of its stderr. The time limit (``child_timeout_s``) is a backstop for a hung child: the child's
own transfer limits always end a slow download first. ``close`` kills running children (the agent stops).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from edgefleet.agent.datadir import DeviceIdentity
from edgefleet.agent.install.child_wire import (
    FetchRequest,
    error_from_json,
    event_from_json,
    report_from_json,
)
from edgefleet.agent.install.fetch import ResolvedAssignment, manifest_from_bytes
from edgefleet.agent.install.manifest_cache import ManifestCache
from edgefleet.agent.install.steps import TransferReport
from edgefleet.protocol.wire.desired_state import Assignment
from edgefleet.trust.errors import DownloadFailedError, HashMismatchError
from edgefleet.trust.events import NullSink, SecurityEventSink

__all__ = ["CHILD_COMMAND", "ChildFetcher", "FetchChildFailedError", "child_timeout_s"]

log = logging.getLogger("edgefleet.agent.install")

CHILD_COMMAND = (sys.executable, "-m", "edgefleet.agent.install.fetch_child")
MAX_REPLY_BYTES = 4 * 1024 * 1024
"""A reply is a manifest, a file list, a few events: far under this."""
STDERR_TAIL_BYTES = 2000
STARTUP_S = 60.0
"""Interpreter start and imports (about a second on the build host), hashing, a delta rebuild."""
METADATA_REQUESTS = 4
"""The TUF refresh: root chain, timestamp, snapshot, targets (each one request bounded by the timeout)."""
MIN_BYTES_PER_S = 8192.0
"""The slowest transfer the child accepts before it fails it by itself (``DownloadPolicy.min_bytes_per_s``,
sent with each request)."""


class FetchChildFailedError(DownloadFailedError):
    """The fetch child crashed, was killed, ran past its time limit or gave no readable reply. Nothing was
    installed; like any download failure the install is retried."""

    code = "fetch_child_failed"


def child_timeout_s(
    *, payload_bytes: int, files: int, http_timeout_s: float, max_bytes_per_s: float | None
) -> float:
    """Pure: how long a child may run. ``STARTUP_S`` + ``METADATA_REQUESTS`` requests + per file two request
    timeouts (connect, and the grace before throughput is judged) + the payload at the slowest throughput the
    child accepts (``MIN_BYTES_PER_S``, or a quarter of the class's download budget when lower: the
    downloader's own floor). A child within its own limits always finishes or fails before this."""
    floor = MIN_BYTES_PER_S if max_bytes_per_s is None else min(MIN_BYTES_PER_S, max_bytes_per_s / 4)
    requests_s = (METADATA_REQUESTS + 2 * files) * http_timeout_s
    return STARTUP_S + requests_s + payload_bytes / floor


def _tail(fh: IO[bytes]) -> str:
    size = fh.seek(0, os.SEEK_END)
    fh.seek(max(0, size - STDERR_TAIL_BYTES))
    return fh.read().decode(errors="replace").strip()


def _exit_status(returncode: int) -> str:
    return f"killed by signal {-returncode}" if returncode < 0 else f"exit status {returncode}"


class ChildFetcher:
    def __init__(
        self,
        data_dir: Path,
        identity: DeviceIdentity,
        *,
        now: Callable[[], datetime],
        events: SecurityEventSink | None = None,
        http_timeout_s: float = 60.0,
        max_bytes_per_s: float | None = None,
        command: Sequence[str] = CHILD_COMMAND,
    ) -> None:
        self._root = Path(data_dir)
        self._identity = identity.to_dict()
        self._now = now
        self._events = events or NullSink()
        self._http_timeout_s = http_timeout_s
        self._max_bytes_per_s = max_bytes_per_s
        self._command = list(command)
        """The child (tests inject crashing or hanging stand-ins)."""
        self._manifests = ManifestCache(self._root)
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[bytes]] = set()
        self._closed = False
        self.last_transfer: TransferReport | None = None
        """What the last successful ``fetch`` downloaded (deltas, fallbacks); the download step reports it."""

    def resolve(self, assignment: Assignment) -> ResolvedAssignment:
        target = assignment.manifest
        raw = self._manifests.read(target)
        if raw is None:
            reply = self._call(
                "resolve",
                self._timeout(target.length, 1),
                assignment=assignment.to_dict(),
            )
            raw = base64.b64decode(reply["manifest_b64"])
            got = (hashlib.sha256(raw).hexdigest(), len(raw))
            if got != (target.sha256, target.length):  # the child checked it: this is a broken reply
                raise HashMismatchError(
                    "the fetch child's manifest is not the assigned one",
                    expected={"sha256": target.sha256, "length": target.length},
                    got={"sha256": got[0], "length": got[1]},
                )
        return ResolvedAssignment(assignment.artifact_id, manifest_from_bytes(raw, target), target)

    def fetch(self, assignment: ResolvedAssignment, staging_dir: Path) -> dict[str, Path]:
        manifest = assignment.manifest
        self.last_transfer = None
        reply = self._call(
            "fetch",
            self._timeout(manifest.total_bytes, len(manifest.files)),
            resolved={
                "artifact_id": assignment.artifact_id,
                "manifest": manifest.to_dict(),
                "target": assignment.target.to_dict(),
            },
            staging_dir=str(staging_dir),
        )
        if reply.get("transfer") is not None:
            self.last_transfer = report_from_json(reply["transfer"])
        return {str(name): Path(path) for name, path in reply["files"].items()}

    def director_keys_pem(self) -> list[str]:
        """The director keys the refreshed, verified TUF root names, as PEM (key rotation)."""
        reply = self._call("director_keys", self._timeout(0, 0))
        return [str(pem) for pem in reply["pems"]]

    def close(self) -> None:
        """Kill the running children (their calls raise ``fetch_child_failed``) and start no more."""
        with self._lock:
            self._closed = True
            running = list(self._running)
        for proc in running:
            proc.kill()

    def _timeout(self, payload_bytes: int, files: int) -> float:
        return child_timeout_s(
            payload_bytes=payload_bytes,
            files=files,
            http_timeout_s=self._http_timeout_s,
            max_bytes_per_s=self._max_bytes_per_s,
        )

    def _call(self, operation: str, timeout_s: float, **fields: Any) -> dict[str, Any]:
        request = FetchRequest(
            operation=operation,
            agent_pid=os.getpid(),
            data_dir=str(self._root),
            identity=self._identity,
            now=self._now().isoformat(),
            http_timeout_s=self._http_timeout_s,
            max_bytes_per_s=self._max_bytes_per_s,
            min_bytes_per_s=MIN_BYTES_PER_S,
            **fields,
        )
        reply = self._spawn(operation, json.dumps(request.to_json()).encode(), timeout_s)
        for event in reply.get("events", []):
            self._events.record(event_from_json(event))
        if "error" in reply:
            raise error_from_json(reply["error"])
        if "os_error" in reply:
            raise OSError(reply["os_error"]["errno"], reply["os_error"]["message"])
        result = reply.get("ok")
        if not isinstance(result, dict):
            raise FetchChildFailedError(f"the fetch child ({operation}) replied without a result", got=reply)
        return result

    def _spawn(self, operation: str, request: bytes, timeout_s: float) -> dict[str, Any]:
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            with self._lock:
                if self._closed:
                    raise FetchChildFailedError(f"the agent is stopping: no fetch child for {operation}")
                proc = subprocess.Popen(self._command, stdin=subprocess.PIPE, stdout=out, stderr=err)
                self._running.add(proc)
            timed_out = False
            try:
                try:
                    assert proc.stdin is not None
                    proc.stdin.write(request)
                    proc.stdin.close()
                except OSError:  # it died before reading: its exit status says why
                    pass
                try:
                    proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    timed_out = True
                    proc.kill()
                    proc.wait()
            finally:
                with self._lock:
                    self._running.discard(proc)
                if proc.poll() is None:  # interrupted here (KeyboardInterrupt): never leave it running
                    proc.kill()
                    proc.wait()
            stderr = _tail(err)
            failed = {"exit": _exit_status(proc.returncode), "stderr_tail": stderr}
            if timed_out:
                raise FetchChildFailedError(
                    f"the fetch child ({operation}) ran past its time limit and was killed",
                    expected=f"<= {timeout_s:.0f} s",
                    got=failed,
                )
            if proc.returncode != 0:
                why = "the agent is stopping" if self._closed else "it crashed or was killed"
                raise FetchChildFailedError(
                    f"the fetch child ({operation}) ended with {failed['exit']} ({why}); stderr: "
                    f"{stderr[-500:] or '(empty)'}",
                    got=failed,
                )
            for line in stderr.splitlines():  # its warnings (a delta refused, ...) belong in the agent's log
                log.warning("event=fetch_child_log operation=%s %s", operation, line)
            out.seek(0)
            raw = out.read(MAX_REPLY_BYTES + 1)
        try:
            if len(raw) > MAX_REPLY_BYTES:
                raise ValueError(f"reply over {MAX_REPLY_BYTES} bytes")
            reply = json.loads(raw)
            if not isinstance(reply, dict):
                raise ValueError("reply is not an object")
        except ValueError as exc:
            raise FetchChildFailedError(
                f"the fetch child ({operation}) gave no readable reply: {exc}",
                got=raw[:200].decode(errors="replace"),
            ) from exc
        return reply
