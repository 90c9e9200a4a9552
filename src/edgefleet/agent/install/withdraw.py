"""The kill switch with nothing to return to: a disabled artifact that is active in a slot without a
``previous`` version is *withdrawn* — its ``active`` pointer is removed (after a ``withdrawn`` marker
records what and why), so serving runs down its degraded ladder: the class's fallback artifact when the
device holds one, else the rule. The files stay on disk, so a re-enabled artifact installs again without a
download. Before this, such a device kept serving the disabled model (``kept:artifact_disabled:no_previous``).

Pure decisions (``withdraws``, ``recovery_action``) and their execution (``withdraw``, ``recover``).
"""

from __future__ import annotations

import logging
import secrets
from typing import Literal

from edgefleet.agent.install.executor import Executor, SlotRun
from edgefleet.agent.install.machine import Phase, Pointer, SlotState, Withdrawn

__all__ = ["WITHDRAWING_REASONS", "recover", "recovery_action", "withdraw", "withdrawn", "withdraws"]

log = logging.getLogger("edgefleet.agent.install")

WITHDRAWING_REASONS = frozenset({"artifact_disabled"})
"""Rollback reasons that withdraw the active version when there is no previous one. A failed trial with no
previous keeps its version (something must serve); a disabled artifact must not serve at all."""


def withdraws(reason: str) -> bool:
    """Pure: does a rollback for ``reason`` that finds no ``previous`` withdraw the active version?"""
    return reason in WITHDRAWING_REASONS


def withdrawn(reason: str) -> SlotState:
    return SlotState(Phase.WITHDRAWN, reason)


def recovery_action(
    marker: Withdrawn | None, active: Pointer | None
) -> Literal["none", "finish", "clear", "keep"]:
    """Pure: what a restart does with a slot's withdrawal marker.

    ``finish``: the marker names the active version (a crash cut between the marker and the pointer
    removal); ``clear``: another version became active since (a stale marker); ``keep``: withdrawn, nothing
    active (report it as such); ``none``: no marker."""
    if marker is None:
        return "none"
    if active is None:
        return "keep"
    return "finish" if active.version == marker.version else "clear"


def withdraw(ex: Executor, s: SlotRun, active: Pointer, reason: str) -> None:
    """Withdraw ``active`` (journaled first): nothing serves from this slot until a new assignment."""
    ex.journal(
        s,
        secrets.token_hex(8),
        event="withdrawn",
        artifact_id=active.artifact_id,
        version=active.version,
        code=reason,
    )
    s.store.withdraw(active, reason=reason, at=ex.now().isoformat())
    old = s.model
    ex.hold(s, None, None)  # nothing loaded in this slot now
    if old is not None:
        old.close()
    s.state = withdrawn(reason)
    s.failed = (active.artifact_id, reason)
    s.last_error = {
        "code": reason,
        "message": f"{active.artifact_id} withdrawn, no previous version: serving on its degraded ladder",
        "at": ex.now().isoformat(),
    }
    log.warning("event=withdrawn slot=%s artifact=%s reason=%s", s.store.slot, active.artifact_id, reason)


def recover(ex: Executor, s: SlotRun) -> None:
    """On start, before the active version is loaded: finish, clear or report a withdrawal."""
    store = s.store
    marker = store.read_withdrawn()
    active = store.read_active()
    action = recovery_action(marker, active)
    if action == "finish":
        assert marker is not None
        assert active is not None
        store.withdraw(active, reason=marker.reason, at=marker.at)
    elif action == "clear":
        store.clear_withdrawn()
        return
    if action in ("finish", "keep"):
        assert marker is not None
        s.state = withdrawn(marker.reason)
        s.failed = (marker.artifact_id, marker.reason)
