"""The A/B slot installer: never brick (ARCHITECTURE 3.4). ``SlotInstaller`` is the public face; the pure
decisions are in ``machine``, and the executor that carries them out against the ``SlotStore`` and the
``Journal`` is split by concern: ``attempt`` (apply an assignment: journaled steps and the switch),
``conclude`` (a trial's end: commit, or roll back to ``previous``) and ``recovery`` (replay at start).

Per model slot, an attempt runs the journaled steps download -> verify -> stage -> load -> health -> switch,
then a trial, then commit. Until the switch, the old version keeps serving untouched. During the trial a crash
of the agent, a failure rate over the threshold or a missed watchdog rolls back to ``previous`` without the
network. A release rejected or rolled back ``max_rollbacks`` times is refused locally until a newer one
arrives. ``recover()`` runs once at start (``recovery``). Each version is loaded by the adapter its manifest's
``runtime.name`` names (``adapter_for``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

from edgefleet.agent.datadir import AgentLock
from edgefleet.agent.install import machine as sm
from edgefleet.agent.install.attempt import apply_slot
from edgefleet.agent.install.conclude import judge_trial, rollback
from edgefleet.agent.install.executor import AdapterFor, Executor, InstallerConfig, SlotRun
from edgefleet.agent.install.faults import CrashHook, no_crash
from edgefleet.agent.install.fetch import ArtifactFetcher
from edgefleet.agent.install.journal import Journal
from edgefleet.agent.install.machine import RestartCause
from edgefleet.agent.install.recovery import recover_slot
from edgefleet.agent.install.slots import SlotStore
from edgefleet.agent.install.steps import NoSteps, StepSink
from edgefleet.agent.install.trial import TrialPolicy
from edgefleet.agent.runtime.base import LoadedModel, RuntimeAdapter
from edgefleet.protocol.errors import EdgefleetError
from edgefleet.protocol.update_window import parse_update_window, window_open
from edgefleet.protocol.wire.desired_state import DesiredState, SlotReport

__all__ = ["AdapterFor", "InstallerConfig", "SlotInstaller"]

log = logging.getLogger("edgefleet.agent.install")


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class SlotInstaller:
    """Implements ``agent.install.interface.Installer``. Holds ``slots/installer.lock`` while open.

    Give ``adapter_for`` (the agent does) to load each version with the runtime its manifest names, or one
    ``adapter`` to load every version with it whatever the manifest says (tests, benches).
    """

    def __init__(
        self,
        data_root: Path,
        fetcher: ArtifactFetcher,
        adapter: RuntimeAdapter | None = None,
        *,
        adapter_for: AdapterFor | None = None,
        config: InstallerConfig | None = None,
        now: Callable[[], datetime] = _utcnow,
        crash: CrashHook = no_crash,
        steps: StepSink | None = None,
        isolated_for: AdapterFor | None = None,
    ) -> None:
        if adapter is None and adapter_for is None:
            raise TypeError("SlotInstaller needs an adapter or adapter_for")
        self._root = Path(data_root)
        self._ex = Executor(
            fetcher=fetcher,
            config=config or InstallerConfig(),
            now=now,
            crash=crash,
            steps=steps or NoSteps(),
            adapter=adapter,
            adapter_for=adapter_for,
            isolated_for=isolated_for,
        )
        self._now = now
        self._crash = crash
        self._mutex = threading.RLock()
        self._slots: dict[str, SlotRun] = {}
        self._desired: DesiredState | None = None
        self._lock = AgentLock(self._root / "slots" / "installer.lock")
        self._lock.acquire()

    def close(self) -> None:
        self._lock.release()

    def __enter__(self) -> SlotInstaller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def set_trial_policy(self, trial: TrialPolicy) -> None:
        """Remote configuration: trials that start from now on follow ``trial`` (one on trial now keeps
        being judged by it too: the policy is read at each judgement)."""
        with self._mutex:
            self._ex.config = replace(self._ex.config, trial=trial)

    # serving-side API
    def model(self, slot: str) -> LoadedModel | None:
        """The loaded version of ``slot``; ``None`` where the serving layer holds it (``release_served``)."""
        s = self._slots.get(slot)
        return s.model if s else None

    def serving(self, slot: str) -> str | None:
        """The artifact id whose model ``model(slot)`` returns."""
        s = self._slots.get(slot)
        return s.serving_artifact if s else None

    def record_inference(self, slot: str, *, ok: bool) -> None:
        s = self._slots.get(slot)
        if s is None or s.trial is None:
            return
        with s.counters:
            if s.trial is not None:
                s.trial.requests += 1
                s.trial.failures += 0 if ok else 1

    def heartbeat(self, slot: str) -> None:
        """The serving layer is alive and serving (feeds ``TrialPolicy.watchdog_s``). Never blocks on an
        install in progress."""
        s = self._slots.get(slot)
        if s is None or s.trial is None:
            return
        with s.counters:
            if s.trial is not None:
                s.trial.heartbeat_at = self._now().isoformat()

    def on_trial(self, slot: str) -> str | None:
        """``<model>/<version>`` of the version on trial in ``slot``, or ``None``. Never blocks."""
        s = self._slots.get(slot)
        trial = s.trial if s is not None else None
        return trial.model_version if trial is not None else None

    def last_error(self, slot: str) -> dict[str, object] | None:
        s = self._slots.get(slot)
        return s.last_error if s else None

    def slot_reports(self) -> dict[str, SlotReport]:
        out: dict[str, SlotReport] = {}
        for name, s in sorted(self._slots.items()):
            active = s.store.read_active()
            previous = s.store.read_previous()
            desired = self._desired_artifact(name)
            lag = sm.behind(desired, active, s.loaded, s.state)
            waiting = lag is not None and self._waits_for_window(name, s)
            out[name] = SlotReport(
                active=active.artifact_id if active else None,
                previous=previous.artifact_id if previous else None,
                state=s.state.wire(),
                failed_artifact=s.failed[0][:64] if s.failed else None,
                failure_code=s.failed[1][:64] if s.failed else None,
                desired=desired,
                behind=lag.reason[:64] if lag else None,
                retrying=lag.retry and not waiting if lag else False,
            )
        return out

    def switch_allowed(self, slot: str) -> bool:
        """Whether ``slot`` may switch now: the desired state's update window is open in the device's zone,
        an urgent rollout exempts the slot (``DesiredState.window_exempt_slots``), or nothing serves in it
        yet."""
        state = self._desired
        if state is None or slot in state.window_exempt_slots:
            return True
        s = self._slots.get(slot)
        if s is None or s.store.read_active() is None:
            return True  # nothing serves in this slot yet: the first install disturbs no one
        try:
            window = parse_update_window(state.update_window)
        except EdgefleetError:  # validated with the document; never a reason to block an install
            return True
        return window_open(window, self._ex.config.time_zone, self._now())

    def _waits_for_window(self, name: str, s: SlotRun) -> bool:
        return s.state == sm.PENDING_WINDOW and not self.switch_allowed(name)

    def _desired_artifact(self, slot: str) -> str | None:
        assignment = self._desired.slots.get(slot) if self._desired is not None else None
        return assignment.artifact_id if assignment is not None else None

    def wants_retry(self) -> bool:
        """Some slot is behind its desired artifact and not refused: ``retry()`` would install it."""
        for name, s in list(self._slots.items()):
            lag = sm.behind(self._desired_artifact(name), s.store.read_active(), s.loaded, s.state)
            if lag is not None and lag.retry and not self._waits_for_window(name, s):
                return True
        return False

    def retry(self) -> bool:
        """Apply the last desired state again when ``wants_retry()``. True when it did."""
        with self._mutex:
            if self._desired is None or not self.wants_retry():
                return False
            self.apply(self._desired)
            return True

    # lifecycle
    def _slot(self, name: str) -> SlotRun:
        s = self._slots.get(name)
        if s is None:
            store = SlotStore(self._root, name, crash=self._crash)
            journal = Journal(self._root / "journal" / f"{name}.jsonl", crash=self._crash)
            s = self._slots[name] = SlotRun(store, journal)
        return s

    def recover(self, cause: RestartCause = "unknown") -> None:
        """Replay the journal of every slot on disk and load what is active. Idempotent. ``cause``: how the
        previous run ended (``agent.lifecycle``); a restart during a trial counts against the version on trial
        only when the model may have caused it (``machine.restart_counts``)."""
        slots_dir = self._root / "slots"
        names = sorted(p.name for p in slots_dir.iterdir() if p.is_dir()) if slots_dir.is_dir() else []
        with self._mutex:
            for name in names:
                recover_slot(self._ex, self._slot(name), cause)

    # apply
    def apply(self, state: DesiredState) -> None:
        disabled = frozenset(state.disabled_artifacts)
        with self._mutex:
            self._desired = state
            actives = {}
            for name, s in list(self._slots.items()):
                active = s.store.read_active()
                actives[name] = active.artifact_id if active is not None else None
            for name in sm.disabled_orphans(actives, frozenset(state.slots), disabled):
                rollback(self._ex, self._slots[name], "artifact_disabled", count=False)
            for name, assignment in sorted(state.slots.items()):
                s = self._slot(name)
                if s.deferred_artifact == assignment.artifact_id and self._waits_for_window(name, s):
                    continue  # staged already; the window is still closed
                try:
                    apply_slot(self._ex, s, assignment, disabled, partial(self.switch_allowed, name))
                except EdgefleetError as exc:  # never raise per-slot failures to the coordinator
                    s.last_error = self._ex.error(exc, exc.message)
                    s.state = sm.failed(exc.code)
                    s.failed = (assignment.artifact_id, exc.code)
            self.tick()

    # trial
    def tick(self) -> None:
        """Judge every trial now: commit, keep going, or roll back. Call it periodically."""
        with self._mutex:
            for s in self._slots.values():
                if s.trial is not None:
                    judge_trial(self._ex, s)

    def model_crashed(self, slot: str, version: str, how: str) -> bool:
        """The trial worker running ``version`` in ``slot`` died on its own (``how``: ``SIGSEGV``, ...):
        the version on trial crashed its runtime. Roll back, counted. True when it rolled back."""
        with self._mutex:
            s = self._slots.get(slot)
            if s is None or s.trial is None or s.trial.version != version:
                return False
            log.error("event=trial_model_crashed slot=%s artifact=%s exit=%s", slot, s.trial.artifact_id, how)
            rolled = rollback(self._ex, s, "trial_model_crashed", count=True)
            if rolled:
                s.last_error = {
                    "code": "trial_model_crashed",
                    "message": f"the version on trial crashed its worker process ({how}); rolled back",
                    "details": {"exit": how},
                    "at": self._now().isoformat(),
                }
            return rolled

    def trial_version(self, slot: str) -> str | None:
        """The version key on trial in ``slot`` (what the serving layer runs in the trial worker). Never
        blocks."""
        s = self._slots.get(slot)
        trial = s.trial if s is not None else None
        return trial.version if trial is not None else None

    def rollback(self, slot: str, reason: str = "operator") -> bool:
        """Re-activate ``previous`` now (without the network). False when it is missing or corrupt."""
        with self._mutex:
            return rollback(self._ex, self._slot(slot), reason, count=False)
