"""The class-wide part of the director's answer, read once per director epoch and class.

A full answer for one device used to read every row it depends on: the class pins, the active rollouts of
its class, the artifacts they name, the class document (its update window), the agent configuration layers
and its probes, ~10 statements per device. All of these change only together with the director epoch (every
change to them moves it in its own transaction, ``services.director_epoch``), so a process reads them once
per (epoch, class) into a :class:`ClassView` and a full answer reads only the device's own rows: its
rollout membership, and its device pins, device configuration or pending probe when it has any (the view
lists which devices do).

The view is read inside the transaction that read the epoch, after reading it, so it holds every change
up to that epoch (a change committed since is newer, never older). A process keeps the views of the newest
epoch it has seen only; an answer at another epoch reads its own.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from edgefleet.server.services.agent_config import ConfigLayer, config_layer
from edgefleet.server.services.rollouts.overlay import RolloutFacts, active_rollouts
from edgefleet.server.store.agent_config import AgentConfigRow
from edgefleet.server.store.devices import PinRow
from edgefleet.server.store.probes import ProbeDeviceRow
from edgefleet.server.store.registry import ArtifactRow, HardwareClassRow

__all__ = ["ClassView", "DirectorViews", "load_class_view"]


@dataclass(frozen=True)
class ClassView:
    """What every device of one class is answered from at one director epoch (read only, shared)."""

    epoch: int
    hardware_class: str
    class_pins: Mapping[str, str]
    """slot -> artifact id"""
    rollouts: tuple[RolloutFacts, ...]
    """Active rollouts of the class, oldest first (the order that decides a contested slot)."""
    artifacts: Mapping[str, ArtifactRow]
    """The artifacts the class pins and the rollouts name (transient rows, never attached to a session)."""
    class_document: dict[str, Any] | None
    config_layers: tuple[ConfigLayer, ...]
    """Class and selector layers (a device's own layer is read with the device)."""
    pinned_devices: frozenset[str]
    """Devices with a device pin (of any class): only those read their pins."""
    configured_devices: frozenset[str]
    """Devices with a device configuration layer."""
    probed_devices: frozenset[str]
    """Devices with an unreported probe."""


def load_class_view(session: Session, hardware_class: str, epoch: int) -> ClassView:
    """Read the view inside the caller's transaction (which read ``epoch`` before calling)."""
    class_pins = {
        slot: artifact_id
        for slot, artifact_id in session.execute(
            select(PinRow.slot, PinRow.artifact_id).where(
                PinRow.scope == "class", PinRow.target == hardware_class
            )
        ).all()
    }
    rollouts = tuple(active_rollouts(session, hardware_class))
    wanted = set(class_pins.values()) | {r.targets.get(hardware_class, {}).get("to") or "" for r in rollouts}
    wanted.discard("")
    artifacts: dict[str, ArtifactRow] = {}
    if wanted:
        columns = ArtifactRow.__table__.columns
        for row in session.execute(select(*columns).where(columns.id.in_(sorted(wanted)))).mappings():
            artifacts[row["id"]] = ArtifactRow(**row)  # transient: shared between threads, read only
    document = session.execute(
        select(HardwareClassRow.document).where(HardwareClassRow.name == hardware_class)
    ).scalar_one_or_none()
    layers = session.execute(
        select(AgentConfigRow).where(
            ((AgentConfigRow.scope == "class") & (AgentConfigRow.target == hardware_class))
            | (AgentConfigRow.scope == "selector")
        )
    ).scalars()
    return ClassView(
        epoch=epoch,
        hardware_class=hardware_class,
        class_pins=class_pins,
        rollouts=rollouts,
        artifacts=artifacts,
        class_document=dict(document) if document is not None else None,
        config_layers=tuple(config_layer(r) for r in layers),
        pinned_devices=frozenset(
            session.execute(select(PinRow.target).where(PinRow.scope == "device").distinct()).scalars()
        ),
        configured_devices=frozenset(
            session.execute(
                select(AgentConfigRow.target).where(AgentConfigRow.scope == "device").distinct()
            ).scalars()
        ),
        probed_devices=frozenset(
            session.execute(
                select(ProbeDeviceRow.device_id).where(ProbeDeviceRow.reported_at.is_(None)).distinct()
            ).scalars()
        ),
    )


class DirectorViews:
    """Per process: the class views of the newest director epoch seen (older epochs' views are dropped)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._epoch = -1
        self._views: dict[str, ClassView] = {}

    def get(self, session: Session, hardware_class: str, epoch: int) -> ClassView:
        with self._lock:
            if epoch == self._epoch and hardware_class in self._views:
                return self._views[hardware_class]
        view = load_class_view(session, hardware_class, epoch)  # racing threads read it twice: harmless
        with self._lock:
            if epoch > self._epoch:
                self._epoch, self._views = epoch, {}
            if epoch == self._epoch:
                self._views[hardware_class] = view
        return view
