"""The degraded-mode ladder as pure decisions over an immutable state (ARCHITECTURE 3.5).

Rungs, best first: ``preferred`` (the class's execution providers) -> ``cpu`` (the same artifact on the
CPU provider) -> ``fallback`` (the class's small pinned artifact) -> ``rule`` (a fixed safe answer, or
defer). ``failures_to_descend`` consecutive failures at a rung step down; a success resets the count. While
below the best rung, a probe of the rungs above is due at ``probe_at``; each failed probe doubles the wait
up to ``probe_max_s``. Time spent per rung is accumulated from the explicit ``now`` passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

__all__ = [
    "RUNGS",
    "LadderPolicy",
    "LadderState",
    "Rung",
    "after_failure",
    "after_probe",
    "after_success",
    "enter",
    "probe_due",
    "rung_times",
]

Rung = Literal["preferred", "cpu", "fallback", "rule"]
RUNGS: tuple[Rung, ...] = ("preferred", "cpu", "fallback", "rule")


@dataclass(frozen=True)
class LadderPolicy:
    failures_to_descend: int = 3
    probe_initial_s: float = 5.0
    probe_max_s: float = 300.0

    def __post_init__(self) -> None:
        if self.failures_to_descend < 1:
            raise ValueError(f"failures_to_descend must be >= 1, got {self.failures_to_descend}")
        if not 0 < self.probe_initial_s <= self.probe_max_s:
            raise ValueError("need 0 < probe_initial_s <= probe_max_s")


@dataclass(frozen=True)
class LadderState:
    rung: Rung
    entered_at: float
    failures: int = 0
    probe_at: float | None = None
    probe_wait_s: float = 0.0
    spent_s: dict[str, float] = field(default_factory=dict)
    """Seconds in each rung before ``entered_at`` (the current stay is added by ``rung_times``)."""


def enter(state: LadderState | None, rung: Rung, policy: LadderPolicy, now: float) -> LadderState:
    """Move to ``rung`` (down, up or the same after a swap). Below the best rung a probe is scheduled."""
    spent = dict(state.spent_s) if state is not None else {}
    if state is not None:
        spent[state.rung] = spent.get(state.rung, 0.0) + max(0.0, now - state.entered_at)
    if rung == "preferred":
        return LadderState(rung=rung, entered_at=now, spent_s=spent)
    wait = policy.probe_initial_s
    return LadderState(rung=rung, entered_at=now, probe_at=now + wait, probe_wait_s=wait, spent_s=spent)


def after_success(state: LadderState) -> LadderState:
    return state if state.failures == 0 else replace(state, failures=0)


def after_failure(state: LadderState, policy: LadderPolicy) -> tuple[LadderState, bool]:
    """(new state, whether to step down now)."""
    failures = state.failures + 1
    return replace(state, failures=failures), failures >= policy.failures_to_descend


def probe_due(state: LadderState, now: float) -> bool:
    return state.probe_at is not None and now >= state.probe_at


def after_probe(state: LadderState, policy: LadderPolicy, now: float) -> LadderState:
    """A probe found no better rung usable: wait twice as long (capped) before the next."""
    wait = min(policy.probe_max_s, max(policy.probe_initial_s, state.probe_wait_s * 2))
    return replace(state, probe_at=now + wait, probe_wait_s=wait)


def rung_times(state: LadderState, now: float) -> dict[str, float]:
    """Seconds spent in each rung so far, the current stay included."""
    out = dict(state.spent_s)
    out[state.rung] = out.get(state.rung, 0.0) + max(0.0, now - state.entered_at)
    return out
