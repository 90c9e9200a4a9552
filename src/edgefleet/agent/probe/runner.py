"""The probe runner: takes the director's probe order, measures each candidate in a subprocess, reports.

Order of work for one probe: refuse an expired order; fetch the bundle through the same TUF-verified path
as an install (every file checked against the release-signed targets) into ``<data dir>/probe-scratch/<id>``
(never the slots); run one worker process per candidate (``nice``, an address-space limit, the class's RAM
budget watched on its resident set, a time limit); pause the worker while serving has queued requests;
report; delete the scratch area. A candidate that crashes, hangs or outgrows the budget is reported failed
with the reason, and serving is untouched. Finished probes are remembered (``<data dir>/probes/<id>.json``)
so a restart neither measures twice nor loses an unsent report.
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from edgefleet.agent.install.fetch import ResolvedAssignment
from edgefleet.durable import atomic_write_bytes
from edgefleet.protocol.canonical import canonical_json
from edgefleet.protocol.errors import EdgefleetError, InvalidDocumentError
from edgefleet.protocol.probe_names import PROBE_INDEX_FILE
from edgefleet.protocol.wire.base import read_document, read_part, to_plain
from edgefleet.protocol.wire.desired_state import Assignment
from edgefleet.protocol.wire.hardware_class import HardwareClass
from edgefleet.protocol.wire.manifest import ArtifactManifest
from edgefleet.protocol.wire.probe import CandidateFigures, ProbeIndex, ProbeOrder, ProbeResults

__all__ = ["ProbeRunner", "batch_sizes_for"]

log = logging.getLogger("edgefleet.agent.probe")
MIB = 1024 * 1024
ADDRESS_SPACE_HEADROOM_BYTES = 2048 * MIB
"""The interpreter and the runtime reserve far more address space than they touch: the hard limit is the
RAM budget plus this; the budget itself is enforced on the resident set, which is what it means."""
NICE_INCREMENT = 10
WATCH_INTERVAL_S = 0.05
REPORT_RETRY_CAP_S = 60.0
WORKER_COMMAND = (sys.executable, "-m", "edgefleet.agent.probe.worker")


TRANSIENT_CODES = frozenset(
    {"server_unreachable", "response_deadline_exceeded", "download_failed", "download_too_slow", "disk_full"}
)


class _Transient(Exception):
    """The bundle could not be fetched for a reason that passes (network, server, a full disk)."""


def _transient(exc: EdgefleetError) -> bool:
    return exc.code in TRANSIENT_CODES or exc.http_status >= 500 or exc.http_status == 429


class BundleFetcher(Protocol):
    def resolve(self, assignment: Assignment) -> ResolvedAssignment: ...

    def fetch(self, assignment: ResolvedAssignment, staging_dir: Path) -> dict[str, Path]: ...


class ProbeCarrier(Protocol):
    """What names a probe: a desired state (its ``probe`` order, as signed, or None)."""

    @property
    def probe(self) -> dict[str, Any] | None: ...


class Reporter(Protocol):
    def request(self, method: str, path: str, *, json_body: Any = None) -> Any: ...


def batch_sizes_for(hwclass: HardwareClass | None) -> list[int]:
    """Batch 1 always; the class's largest batch too when it declares one."""
    top = hwclass.performance.max_batch if hwclass else 1
    return [1] if top <= 1 else [1, top]


def _rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


class ProbeRunner:
    def __init__(
        self,
        data_dir: Path,
        fetcher: BundleFetcher,
        channel: Reporter,
        *,
        hardware_class: HardwareClass | None,
        busy: Callable[[], bool] = lambda: False,
        now: Callable[[], datetime],
        worker: Sequence[str] = WORKER_COMMAND,
    ) -> None:
        self._root = Path(data_dir)
        self._fetcher = fetcher
        self._channel = channel
        self._class = hardware_class
        self._busy = busy
        self._now = now
        self._lock = threading.Lock()
        self._running: str | None = None
        self._stop = threading.Event()
        self._worker = list(worker)
        """The measuring process (tests inject crashing, hanging or memory-hungry stand-ins)."""

    @property
    def done_dir(self) -> Path:
        return self._root / "probes"

    def scratch_dir(self, probe_id: str) -> Path:
        return self._root / "probe-scratch" / probe_id

    def offer(self, state: ProbeCarrier | None) -> None:
        """Called after every accepted desired state: start the probe it names, once."""
        raw = state.probe if state is not None else None
        if not raw:
            return
        try:
            order = read_part(raw, ProbeOrder, kind="probe order")
        except InvalidDocumentError as exc:
            log.warning("event=probe_order_invalid error=%s", str(exc)[:200])
            return
        with self._lock:
            if self._running is not None:
                return
            self._running = order.probe_id
        threading.Thread(target=self.run_until_done, args=(order,), name="probe", daemon=True).start()

    def close(self) -> None:
        self._stop.set()

    def run_until_done(self, order: ProbeOrder) -> None:
        """``run``, again after a transient failure (the network, the server), with capped backoff, until
        it ends, the deadline passes or the agent stops: the director names the order only once."""
        delay_s = 1.0
        try:
            while not self._stop.is_set():
                try:
                    self.run(order)
                    return
                except _Transient as exc:
                    if self._now() >= order.deadline_at:
                        return
                    log.warning("event=probe_retry probe_id=%s code=%s in_s=%g", order.probe_id, exc, delay_s)
                    self._stop.wait(delay_s)
                    delay_s = min(delay_s * 2, REPORT_RETRY_CAP_S)
        except Exception:
            log.exception("event=probe_failed probe_id=%s", order.probe_id)
        finally:
            with self._lock:
                self._running = None

    def run(self, order: ProbeOrder) -> ProbeResults | None:
        """Measure (unless already done) and report (until accepted, refused, or past the deadline)."""
        done = self.done_dir / f"{order.probe_id}.json"
        if done.exists():
            record = json.loads(done.read_text())
            if record.get("sent"):
                return None
            results = read_document(record["results"], ProbeResults, kind="probe results")
        else:
            results = self._measure(order)
            if self._stop.is_set():  # cut short by the agent stopping: measure again after the restart
                return None
            self._keep(done, results, sent=False)
        if self._report(order, results):
            self._keep(done, results, sent=True)
        return results

    def _keep(self, path: Path, results: ProbeResults, *, sent: bool) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, canonical_json({"sent": sent, "results": to_plain(results)}))

    def _measure(self, order: ProbeOrder) -> ProbeResults:
        started = self._now()
        if started >= order.deadline_at:
            return ProbeResults(
                probe_id=order.probe_id,
                started_at=started,
                finished_at=started,
                error_code="probe_expired",
                error="the probe's deadline passed before it could start",
            )
        scratch = self.scratch_dir(order.probe_id)
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        try:
            bundle = scratch / "bundle"
            bundle.mkdir()
            try:
                resolved = self._fetcher.resolve(order.bundle)  # the bundle's manifest, from TUF
                files = self._fetcher.fetch(resolved, bundle)
                index = read_document(
                    json.loads(files[PROBE_INDEX_FILE].read_bytes()), ProbeIndex, kind="probe index"
                )
            except (EdgefleetError, KeyError, ValueError) as exc:
                code = getattr(exc, "code", "probe_bundle_invalid")
                if isinstance(exc, EdgefleetError) and _transient(exc):
                    raise _Transient(code) from exc  # measured later, not reported as the probe's result
                log.warning("event=probe_bundle_refused probe_id=%s code=%s", order.probe_id, code)
                return ProbeResults(
                    probe_id=order.probe_id,
                    started_at=started,
                    finished_at=self._now(),
                    error_code=str(code)[:64],
                    error=str(exc)[:1000],
                )
            figures = [
                self._candidate(order, resolved.manifest, index, files, c.name, c.file, scratch)
                for c in index.candidates
            ]
            return ProbeResults(
                probe_id=order.probe_id, started_at=started, finished_at=self._now(), candidates=figures
            )
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _candidate(
        self,
        order: ProbeOrder,
        manifest: ArtifactManifest,
        index: ProbeIndex,
        files: dict[str, Path],
        name: str,
        file: str,
        scratch: Path,
    ) -> CandidateFigures:
        hwclass = self._class
        threads = hwclass.threads if hwclass else None
        ram_bytes = (hwclass.budgets.ram_mb if hwclass else 1024) * MIB
        spec = {
            "name": name,
            "model_path": str(files[file]),
            "runtime": manifest.runtime.name,
            "providers": list(manifest.runtime.execution_providers),
            "intra_op": threads.intra_op if threads else 1,
            "inter_op": threads.inter_op if threads else 1,
            "signature": to_plain(manifest.signature),
            "validation_path": str(files[index.validation_file]),
            "judged_output": index.judged_output,
            "task": index.task,
            "batch_sizes": batch_sizes_for(hwclass),
            "runs": order.runs,
            "sustained_s": order.sustained_s,
            "pause_path": str(scratch / "pause"),
            "nice": NICE_INCREMENT,
            "max_address_bytes": ram_bytes + ADDRESS_SPACE_HEADROOM_BYTES,
        }
        spec_path, out_path = scratch / f"{name}.spec.json", scratch / f"{name}.out.json"
        spec_path.write_text(json.dumps(spec))
        failure = self._supervise(spec_path, out_path, scratch, ram_bytes, order.time_limit_s)
        if failure is not None:
            log.warning("event=probe_candidate_failed name=%s code=%s", name, failure[0])
            return CandidateFigures(name=name, status="failed", error_code=failure[0], error=failure[1])
        return read_part(out_path.read_bytes(), CandidateFigures, kind="candidate figures")

    def _supervise(
        self, spec_path: Path, out_path: Path, scratch: Path, ram_bytes: int, time_limit_s: float
    ) -> tuple[str, str] | None:
        pause = scratch / "pause"
        log_path = scratch / f"{spec_path.stem}.log"
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen(
                [*self._worker, str(spec_path), str(out_path)],
                stdout=subprocess.DEVNULL,
                stderr=log_file,
                cwd=scratch,
            )
            deadline = time.monotonic() + time_limit_s
            peak_rss = 0
            failure: tuple[str, str] | None = None
            while proc.poll() is None:
                if self._busy():
                    pause.touch()
                elif pause.exists():
                    pause.unlink(missing_ok=True)
                peak_rss = max(peak_rss, _rss_bytes(proc.pid))
                if peak_rss > ram_bytes:
                    failure = (
                        "memory_budget_exceeded",
                        f"resident set {peak_rss / MIB:.1f} MiB > class budget {ram_bytes / MIB:.0f} MiB",
                    )
                elif time.monotonic() > deadline:
                    failure = ("probe_time_limit", f"still running after {time_limit_s:g} s")
                elif self._stop.is_set():
                    failure = ("agent_stopping", "the agent stopped during the measurement")
                if failure is not None:
                    proc.kill()
                    proc.wait()
                    return failure
                time.sleep(WATCH_INTERVAL_S)
        pause.unlink(missing_ok=True)
        if proc.returncode != 0 or not out_path.exists():
            rc = proc.returncode
            why = f"signal {signal.Signals(-rc).name}" if rc < 0 else f"exit status {rc}"
            tail = log_path.read_bytes()[-400:].decode("utf-8", "replace")
            return "runtime_crashed", f"the runtime process ended with {why}: {tail}"
        return None

    def _report(self, order: ProbeOrder, results: ProbeResults) -> bool:
        delay_s = 1.0
        while not self._stop.is_set():
            try:
                self._channel.request(
                    "POST", f"/v1/device/probes/{order.probe_id}/results", json_body=to_plain(results)
                )
                log.info("event=probe_reported probe_id=%s", order.probe_id)
                return True
            except EdgefleetError as exc:
                if 400 <= exc.http_status < 500 and exc.http_status not in (408, 429):
                    log.warning("event=probe_report_refused probe_id=%s code=%s", order.probe_id, exc.code)
                    return True  # refused for good: do not resend
                if self._now() >= order.deadline_at:
                    return False
                self._stop.wait(delay_s)
                delay_s = min(delay_s * 2, REPORT_RETRY_CAP_S)
        return False
