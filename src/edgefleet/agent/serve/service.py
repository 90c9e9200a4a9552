"""The in-process inference service: hot-swapped model, bounded admission, degraded ladder, shadow.

Over 450 lines: the swap, the admission, the degraded ladder and the shadow all act on one serving snapshot.

The hot path reads one immutable ``_Serving`` snapshot (rung, model, signature rules) and calls the model
outside any lock. A swap (a new active artifact, a step down, a successful probe) loads the new model first
and then replaces the snapshot in one assignment: requests in flight finish on the model they started with,
which is released by reference counting once the last of them returns; none is dropped. Old models are never
``close()``d while they may still be serving, because closing cancels runs in flight.

Ladder transitions are decided by the pure functions in ``ladder``; this module only loads and swaps.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgefleet.agent.runtime.base import LoadedModel, LoadOptions, RuntimeAdapter, sample_inputs
from edgefleet.agent.serve import ladder
from edgefleet.agent.serve.admission import AdmissionGate
from edgefleet.agent.serve.config import ServingConfig, rule_outputs
from edgefleet.agent.serve.errors import BadTensorError, InferenceDeferredError, NoModelError
from edgefleet.agent.serve.guard import InputGuard, guard_inputs
from edgefleet.agent.serve.ladder import LadderState, Rung
from edgefleet.agent.serve.metrics import MetricsSink, NullMetrics
from edgefleet.agent.serve.placement import AcceleratorUnavailableError, check_preferred
from edgefleet.agent.serve.runtimes import RuntimeAdapters
from edgefleet.agent.serve.shadow import AgreementStats, ShadowConfig, ShadowEvaluator, resolve_tolerance
from edgefleet.agent.serve.source import ActiveArtifact, ActiveSource, read_artifact_dir
from edgefleet.agent.serve.status import write_status
from edgefleet.agent.serve.validate import InputRules, validate_inputs
from edgefleet.protocol.errors import EdgefleetError
from edgefleet.protocol.wire.manifest import Signature

__all__ = ["MODEL_CRASHED", "InferenceService", "Liveness", "Prediction"]

log = logging.getLogger("edgefleet.agent.serve")
_perf_counter = time.perf_counter
_CPU = ("CPUExecutionProvider",)
MODEL_CRASHED = "model_crashed"
"""The process running the model died (``runtime.worker``): no retry on it can succeed."""


@dataclass(slots=True)
class Prediction:
    outputs: dict[str, np.ndarray]
    model_version: str
    """``<model>/<version>`` of the artifact that answered (``none`` for a rule with no model)."""
    artifact_id: str
    mode: Rung
    latency_ms: float


@dataclass(frozen=True, slots=True)
class Liveness:
    """Is the service making progress? Read without locks (the watchdog must not wait on a stuck run)."""

    rung: Rung
    model_version: str
    in_flight: int
    """Requests holding an inference slot now."""
    since_progress_s: float
    """Seconds since a request last started or finished a run."""


@dataclass(frozen=True, slots=True)
class _Serving:
    rung: Rung
    model: LoadedModel | None
    artifact: ActiveArtifact | None
    rules: InputRules | None
    signature: Signature | None
    model_version: str
    artifact_id: str
    guard: InputGuard | None = None
    # A model run in a supervised worker (a version on trial): the per-request time between the processes,
    # kept out of the latency that telemetry and the rollout gates judge (the committed version is served
    # in-process, without it). ``bench/serving.py`` prints the hop's cost.
    hop_s: Callable[[], float] | None = None


class InferenceService:
    """One model slot's serving. ``predict`` is thread-safe; call ``start()`` for the probe timer (or call
    ``tick()`` yourself) and ``close()`` at the end."""

    def __init__(
        self,
        source: ActiveSource,
        adapter: RuntimeAdapter | None = None,
        config: ServingConfig | None = None,
        *,
        metrics: MetricsSink | None = None,
        clock: Callable[[], float] = time.monotonic,
        fallback_source: ActiveSource | None = None,
        adapter_for: Callable[[str], RuntimeAdapter] | None = None,
        withdrawn: Callable[[], ActiveArtifact | None] | None = None,
    ) -> None:
        """``fallback_source`` (e.g. the installer's ``fallback`` slot, from a class pin) takes precedence
        over ``config.fallback_dir`` (a directory provisioned on the device).

        ``adapter`` loads every artifact with one runtime; without it, each artifact (active, fallback,
        shadow candidate) is loaded by ``adapter_for(manifest.runtime.name)`` (default: ``RuntimeAdapters``).

        ``withdrawn``: the artifact the installer withdrew (kill switch, no previous version), whose signature
        the rule rung answers with when neither an active nor a fallback artifact is there.
        """
        self.config = config or ServingConfig()
        self._source = source
        self._fallback_source = fallback_source
        self._withdrawn = withdrawn
        self._adapter = adapter
        self._adapter_for = adapter_for or RuntimeAdapters()
        self._metrics: MetricsSink = metrics or NullMetrics()
        self._recording = not isinstance(self._metrics, NullMetrics)
        self._clock = clock
        self._gate = AdmissionGate(self.config.admission)
        self._mutex = threading.RLock()
        self._primary: ActiveArtifact | None = None
        self._preferred_is_cpu = False
        self._fallback: ActiveArtifact | None = None
        self._fallback_error: dict[str, Any] | None = None
        self._shadow: ShadowEvaluator | None = None
        self._last_error: dict[str, Any] | None = None
        self._reported_s: dict[str, float] = {}
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._progress_at = _perf_counter()
        with self._mutex:
            self._primary = source.active()
            self._serving, rung = self._select(0, reason="start")
            self._ladder = ladder.enter(None, rung, self.config.ladder, clock())
        self._write_status()
        source.subscribe(self._on_active_changed)

    # --- the hot path --------------------------------------------------------------------------------

    def predict(self, inputs: Mapping[str, np.ndarray]) -> Prediction:
        """Validate, wait for a turn (bounded), run on the current rung. Raises ``BadTensorError``,
        ``ServerBusyError``, ``InferenceDeferredError``, ``NoModelError`` or ``InferenceFailedError``."""
        serving = self._serving
        rules = serving.rules
        try:
            batch = validate_inputs(rules, inputs) if rules is not None else 1
            if serving.guard is not None:
                guard_inputs(serving.guard, inputs)
        except BadTensorError as exc:
            self._metrics.record_request(serving.model_version, serving.rung, 0.0, exc.code)
            raise
        gate = self._gate
        gate.acquire()
        start = self._progress_at = _perf_counter()
        error_code: str | None = None
        try:
            model = serving.model
            if model is None:
                outputs = self._rule_answer(serving, batch)
            else:
                try:
                    outputs = model.predict(inputs)
                except EdgefleetError as exc:
                    outputs, serving = self._recover(serving, inputs, batch, exc)
                else:
                    if self._ladder.failures:
                        self._reset_failures()
        except EdgefleetError as exc:
            error_code = exc.code
            raise
        finally:
            self._progress_at = done = _perf_counter()
            latency_s = done - start
            gate.release(latency_s)
            if self._recording or error_code is not None:
                model_s = latency_s if serving.hop_s is None else max(0.0, latency_s - serving.hop_s())
                self._metrics.record_request(
                    serving.model_version, serving.rung, model_s * 1000.0, error_code
                )
        latency_ms = latency_s * 1000.0
        shadow = self._shadow
        if shadow is not None and serving.rung != "rule":
            shadow.offer(inputs, outputs, latency_ms)
        return Prediction(outputs, serving.model_version, serving.artifact_id, serving.rung, latency_ms)

    def record_input_fault(self, code: str) -> None:
        """A request refused for its input before it reached ``predict`` (e.g. a malformed HTTP body)."""
        serving = self._serving
        self._metrics.record_request(serving.model_version, serving.rung, 0.0, code)

    def _reset_failures(self) -> None:
        with self._mutex:
            self._ladder = ladder.after_success(self._ladder)

    def _recover(
        self, failed: _Serving, inputs: Mapping[str, np.ndarray], batch: int, exc: EdgefleetError
    ) -> tuple[dict[str, np.ndarray], _Serving]:
        """A run failed: count it; when that moved the ladder, answer this request once on the new rung."""
        replacement = self._on_failure(failed, exc)
        if replacement is failed or exc.code == MODEL_CRASHED:
            # A model that crashed its runtime on this input is not run on it again in-process (the
            # fallback's or the rule's rung): the input may crash that runtime too. This request is lost.
            raise exc
        if replacement.model is None:
            return self._rule_answer(replacement, batch), replacement
        try:
            return replacement.model.predict(inputs), replacement
        except EdgefleetError as again:
            self._on_failure(replacement, again)
            raise

    def _rule_answer(self, serving: _Serving, batch: int) -> dict[str, np.ndarray]:
        rule = self.config.rule
        if serving.signature is None:  # nothing installed and no fallback: nothing to answer for
            raise NoModelError("no model is installed", expected="an active artifact", got=None)
        if rule.kind == "fixed":
            return rule_outputs(rule, serving.signature, batch)
        raise InferenceDeferredError(
            "the model is unavailable and the configured rule is to defer",
            retry_after_s=rule.retry_after_s,
            details={"last_error": self._last_error},
        )

    # --- the ladder ----------------------------------------------------------------------------------

    def _on_failure(self, failed: _Serving, exc: EdgefleetError) -> _Serving:
        with self._mutex:
            if self._serving is not failed:  # someone already moved on
                return self._serving
            self._last_error = {"code": exc.code, "message": exc.message[:500], "rung": failed.rung}
            if exc.code == MODEL_CRASHED:
                return self._step_below_model(failed)
            self._ladder, descend = ladder.after_failure(self._ladder, self.config.ladder)
            if not descend:
                return failed
            index = ladder.RUNGS.index(failed.rung) + 1
            serving, rung = self._select(index, reason=exc.code)
            self._swap(serving, rung, reason=exc.code)
            return serving

    def model_died(self) -> bool:
        """The process running the current model died (its watcher saw it, maybe before any request did):
        step down at once. True when it stepped down; False when the current rung runs no dead model."""
        with self._mutex:
            serving = self._serving
            if serving.model is None or not getattr(serving.model, "crashed", False):
                return False
            message = f"the model's worker process died ({serving.model_version})"
            self._last_error = {"code": MODEL_CRASHED, "message": message, "rung": serving.rung}
            self._step_below_model(serving)
            return True

    def _step_below_model(self, failed: _Serving) -> _Serving:
        """Under ``_mutex``. ``failed``'s model process died: step down now, not after
        ``failures_to_descend`` refusals, and past the active artifact's rungs (its CPU twin would load the
        crashed version again) to the fallback or the rule, until a swap or a probe brings a model back."""
        index = max(ladder.RUNGS.index(failed.rung) + 1, ladder.RUNGS.index("fallback"))
        serving, rung = self._select(index, reason=MODEL_CRASHED)
        self._swap(serving, rung, reason=MODEL_CRASHED)
        return serving

    def _select(self, start: int, *, reason: str) -> tuple[_Serving, Rung]:
        """Load the best rung at or below ``RUNGS[start]`` that works; ``rule`` always does."""
        spare: AcceleratorUnavailableError | None = None
        try:
            for rung in ladder.RUNGS[start:]:
                try:
                    serving = self._build(rung, spare)
                except EdgefleetError as exc:
                    self._last_error = {"code": exc.code, "message": exc.message[:500], "rung": rung}
                    log.warning("event=rung_unavailable rung=%s code=%s reason=%s", rung, exc.code, reason)
                    self._metrics.record_event("degraded", f"{rung}_unavailable", {"code": exc.code})
                    if isinstance(exc, AcceleratorUnavailableError):
                        spare = exc
                    continue
                if serving is not None:
                    return serving, rung
        finally:
            if spare is not None:
                spare.release()  # a no-op when the cpu rung took the model
        raise AssertionError("unreachable: the rule rung always builds")  # pragma: no cover

    def _build(self, rung: Rung, spare: AcceleratorUnavailableError | None = None) -> _Serving | None:
        """A snapshot for ``rung``; ``None`` when the rung does not apply (e.g. cpu == preferred). ``spare``:
        the preferred rung's model that landed on the CPU, which the cpu rung takes instead of a reload."""
        primary = self._primary
        if rung == "preferred" or rung == "cpu":
            if primary is None:
                return None
            if rung == "cpu" and self._preferred_is_cpu:
                return None
            providers = tuple(primary.manifest.runtime.execution_providers) if rung == "preferred" else _CPU
            if rung == "cpu" and spare is not None and spare.cpu_model is not None:
                model, spare.cpu_model = spare.cpu_model, None
            else:
                model = self._load(primary, providers)
            if rung == "preferred":
                self._preferred_is_cpu = check_preferred(model, providers)
            return self._snapshot(rung, model, primary)
        if rung == "fallback":
            fallback = self._load_fallback()
            if fallback is None:
                return None
            return self._snapshot(rung, self._load(fallback, _CPU), fallback)
        signature = primary.manifest.signature if primary is not None else None
        if signature is None and self._fallback is not None:
            signature = self._fallback.manifest.signature
        if signature is None and self._withdrawn is not None:
            retired = self._withdrawn()
            signature = retired.manifest.signature if retired is not None else None
        guarded = primary or self._fallback
        serving = _Serving(
            rung="rule",
            model=None,
            artifact=None,
            rules=self._rules(signature) if signature is not None else None,
            signature=signature,
            model_version="rule",
            artifact_id="rule",
            guard=self._guard(guarded) if guarded is not None else None,
        )
        if self.config.rule.kind == "fixed" and signature is not None:
            rule_outputs(self.config.rule, signature, 1)  # refuse a rule that does not fit, at load time
        return serving

    def _rules(self, signature: Signature) -> InputRules:
        return InputRules(signature, max_batch=self.config.max_batch, max_elements=self.config.max_elements)

    def _guard(self, artifact: ActiveArtifact) -> InputGuard | None:
        if not self.config.input_guard:
            return None
        manifest = artifact.manifest
        return InputGuard(manifest.signature, manifest.input_ranges)

    def _snapshot(self, rung: Rung, model: LoadedModel, artifact: ActiveArtifact) -> _Serving:
        # Requests are validated (and guarded) against the active artifact's manifest on every rung.
        signature = (self._primary or artifact).manifest.signature
        return _Serving(
            rung=rung,
            model=model,
            artifact=artifact,
            rules=self._rules(signature),
            signature=signature,
            model_version=artifact.model_version,
            artifact_id=artifact.artifact_id,
            guard=self._guard(self._primary or artifact),
            hop_s=getattr(model, "hop_s", None),
        )

    def _load(
        self, artifact: ActiveArtifact, providers: tuple[str, ...], adapter: RuntimeAdapter | None = None
    ) -> LoadedModel:
        options = LoadOptions(
            execution_providers=providers,
            intra_op_threads=self.config.threads.intra_op,
            inter_op_threads=self.config.threads.inter_op,
            warmup_runs=artifact.manifest.health_check.warmup_runs,
        )
        chosen = adapter or self._adapter or self._adapter_for(artifact.manifest.runtime.name)
        return chosen.load(artifact.model_path, artifact.manifest.signature, options)

    def _load_fallback(self) -> ActiveArtifact | None:
        if self._fallback_source is not None:
            fallback = self._fallback_source.active()
            if fallback is None:
                return None
        elif self.config.fallback_dir is None:
            return None
        else:  # raises artifact_unreadable when missing: a visible event
            fallback = read_artifact_dir(self.config.fallback_dir)
        primary = self._primary
        if primary is not None:
            want = primary.manifest.signature
            got = fallback.manifest.signature
            if [t.to_dict() for t in want.inputs] != [t.to_dict() for t in got.inputs] or [
                t.name for t in want.outputs
            ] != [t.name for t in got.outputs]:
                raise EdgefleetError(
                    "the fallback artifact's signature differs from the active one",
                    code="fallback_signature_mismatch",
                    expected=want.to_dict(),
                    got=got.to_dict(),
                )
        self._fallback = fallback
        return fallback

    def _swap(self, serving: _Serving, rung: Rung, *, reason: str) -> None:
        """Under ``_mutex``. Replace the snapshot in one assignment and record the move."""
        before = self._serving.rung
        self._serving = serving
        self._ladder = ladder.enter(self._ladder, rung, self.config.ladder, self._clock())
        if before != rung:
            log.warning("event=rung_changed from=%s to=%s reason=%s", before, rung, reason)
            self._metrics.record_event(
                "degraded", "rung_changed", {"from": before, "to": rung, "reason": reason}
            )
        self._write_status()

    # --- swaps from outside and probes ---------------------------------------------------------------

    def reload(self) -> None:
        """Load the active artifact again (its runtime placement changed: a version leaving its trial worker
        after the commit, or entering it)."""
        self._on_active_changed(self._source.active())

    def _on_active_changed(self, artifact: ActiveArtifact | None) -> None:
        with self._mutex:
            self._primary = artifact
            self._preferred_is_cpu = False
            serving, rung = self._select(0, reason="active_changed")
            self._swap(serving, rung, reason="active_changed")
        self._metrics.record_event(
            "update", "serving_swapped", {"artifact": serving.artifact_id, "rung": rung}
        )

    def tick(self) -> None:
        """Probe the rungs above the current one when due, and report the time spent per rung."""
        now = self._clock()
        with self._mutex:
            if ladder.probe_due(self._ladder, now):
                self._probe(now)
            times = ladder.rung_times(self._ladder, now)
        for rung, total in times.items():
            delta = total - self._reported_s.get(rung, 0.0)
            if delta > 0 and rung != "preferred":
                self._metrics.record_degraded_time(rung, delta)
            self._reported_s[rung] = total

    def _probe(self, now: float) -> None:
        current = ladder.RUNGS.index(self._ladder.rung)
        for rung in ladder.RUNGS[:current]:
            try:
                serving = self._build(rung)
                if serving is None:
                    continue
                assert serving.model is not None
                assert serving.signature is not None
                self._check(serving.model, serving.signature)
            except EdgefleetError as exc:
                log.info("event=probe_failed rung=%s code=%s", rung, exc.code)
                if isinstance(exc, AcceleratorUnavailableError):
                    exc.release()
                continue
            self._swap(serving, rung, reason="probe_ok")
            return
        self._ladder = ladder.after_probe(self._ladder, self.config.ladder, now)

    @staticmethod
    def _check(model: LoadedModel, signature: Signature) -> None:
        outputs = model.predict(sample_inputs(signature))
        for name, value in outputs.items():
            if np.asarray(value).dtype.kind in "fc" and not np.isfinite(value).all():
                raise EdgefleetError(f"probe output {name!r} is not finite", code="probe_output_not_finite")

    def start(self) -> InferenceService:
        """Run ``tick`` every ``tick_interval_s`` in a daemon thread until ``close``."""
        if self._ticker is None:
            self._ticker = threading.Thread(target=self._tick_loop, name="edgefleet-serve-tick", daemon=True)
            self._ticker.start()
        return self

    def _tick_loop(self) -> None:
        while not self._stop.wait(self.config.tick_interval_s):
            try:
                self.tick()
            except Exception:  # the timer must outlive a bad tick
                log.exception("event=serve_tick_crashed")

    # --- shadow ----------------------------------------------------------------------------------------

    def start_shadow(
        self,
        candidate: ActiveArtifact,
        config: ShadowConfig | None = None,
        *,
        adapter: RuntimeAdapter | None = None,
    ) -> None:
        """Load ``candidate`` (by the runtime its manifest names, or ``adapter``) beside the active model
        and compare on a sampled fraction of requests. Agreement is judged with the config's tolerance, or
        else the candidate manifest's health-check ``atol``/``rtol``."""
        config = config or ShadowConfig()
        model = self._load(candidate, tuple(candidate.manifest.runtime.execution_providers), adapter)
        primary = candidate.manifest.signature.outputs[0].name
        check = candidate.manifest.health_check
        evaluator = ShadowEvaluator(
            model,
            candidate.model_version,
            primary,
            config,
            tolerance=resolve_tolerance(config, check.atol, check.rtol),
            metrics=self._metrics,
        )
        old, self._shadow = self._shadow, evaluator
        if old is not None:
            old.close()

    def stop_shadow(self) -> AgreementStats | None:
        old, self._shadow = self._shadow, None
        return old.close() if old is not None else None

    def shadow_stats(self) -> AgreementStats | None:
        shadow = self._shadow
        return shadow.stats() if shadow is not None else None

    def drain_shadow(self, timeout_s: float = 30.0) -> None:
        shadow = self._shadow
        if shadow is not None:
            shadow.drain(timeout_s)

    # --- introspection ---------------------------------------------------------------------------------

    @property
    def mode(self) -> Rung:
        return self._serving.rung

    @property
    def input_rules(self) -> InputRules | None:
        """What requests are validated against now (``None`` when nothing is installed)."""
        return self._serving.rules

    @property
    def model_version(self) -> str | None:
        serving = self._serving
        return None if serving.rung == "rule" else serving.model_version

    @property
    def artifact_id(self) -> str | None:
        serving = self._serving
        return None if serving.rung == "rule" else serving.artifact_id

    def liveness(self) -> Liveness:
        serving = self._serving
        return Liveness(
            rung=serving.rung,
            model_version=serving.model_version,
            in_flight=self._gate.running,
            since_progress_s=max(0.0, _perf_counter() - self._progress_at),
        )

    def status(self) -> dict[str, Any]:
        serving = self._serving
        state: LadderState = self._ladder
        now = self._clock()
        shadow = self.shadow_stats()
        return {
            "mode": serving.rung,
            "model_version": self.model_version,
            "artifact_id": self.artifact_id,
            "providers": list(serving.model.providers) if serving.model is not None else [],
            "consecutive_failures": state.failures,
            "next_probe_in_s": None if state.probe_at is None else max(0.0, state.probe_at - now),
            "time_in_rung_s": {k: round(v, 3) for k, v in ladder.rung_times(state, now).items()},
            "queue": {
                "running": self._gate.running,
                "waiting": self._gate.waiting,
                "refused": self._gate.refused,
                "max_concurrent": self._gate.policy.max_concurrent,
                "max_queue": self._gate.policy.max_queue,
            },
            "last_error": self._last_error,
            "fallback_configured": self.config.fallback_dir is not None or self._fallback_source is not None,
            "shadow": shadow.to_dict() if shadow is not None else None,
        }

    def _write_status(self) -> None:
        if self.config.status_path is None:
            return
        try:
            write_status(self.config.status_path, self.status())
        except OSError as exc:  # the status file is informative; serving goes on without it
            log.warning("event=status_write_failed error=%s", exc)

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=10)
        self.stop_shadow()
