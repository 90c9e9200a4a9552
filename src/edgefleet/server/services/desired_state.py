"""The director: what each device should run, as a signed ``DesiredState``.

The content (slots and disabled artifacts) is computed from pins: a device pin wins over its class's pin.
A disabled artifact is never assigned and is listed so devices drop it at their next poll. The generation
moves forward only when the content changes or the signed document is past half its lifetime, so a
device's conditional poll (``If-None-Match: "<generation>"``) answers 304 almost always.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import CursorResult, Table, bindparam, select, update
from sqlalchemy.orm import Session

from edgefleet.protocol.canonical import canonical_json
from edgefleet.protocol.desired_state import Assignment, DesiredState, TargetHashes, TargetRef
from edgefleet.protocol.errors import (
    AuthenticationError,
    InvalidDocumentError,
    NotFoundError,
    ServiceUnavailableError,
)
from edgefleet.protocol.hardware_class import RuntimeSpec, device_window
from edgefleet.protocol.manifest import manifest_target_path
from edgefleet.server.services.agent_config import config_layer, effective_config, layers_of
from edgefleet.server.services.director_epoch import current_epoch, stored_document_current
from edgefleet.server.services.director_view import ClassView, DirectorViews, load_class_view
from edgefleet.server.services.fit import check_device_runs
from edgefleet.server.services.probes import probe_section
from edgefleet.server.services.rollouts.overlay import rollout_overlay
from edgefleet.server.store.agent_config import AgentConfigRow
from edgefleet.server.store.devices import DeviceRow, DirectorEpochRow, PinRow
from edgefleet.server.store.registry import ArtifactRow
from edgefleet.trust.director import sign_desired_state

__all__ = [
    "REPORTED_RUNTIMES",
    "DesiredAnswer",
    "DesiredChoice",
    "SignedTargetLookup",
    "content_digest",
    "desired_content",
    "device_can_run",
    "device_runtimes",
    "needs_new_generation",
    "no_signed_targets",
    "reported_runtimes",
    "resolve_desired_state",
]


@dataclass(frozen=True)
class DesiredAnswer:
    generation: int
    envelope: dict[str, Any] | None
    """``None`` when the caller already holds this generation (answer 304)."""
    epoch: int = 0
    """The director epoch the answer was computed at (``services.poll_cache`` keys its entries on it)."""
    reissue_at: datetime | None = None
    """When the signed document passes half its lifetime and is re-issued."""


def needs_new_generation(
    *,
    digest: str,
    stored_digest: str | None,
    stored_expires_at: datetime | None,
    now: datetime,
    ttl: timedelta,
) -> bool:
    """Pure: re-issue when the content changed or the stored document has used half its lifetime."""
    if stored_digest != digest or stored_expires_at is None:
        return True
    return stored_expires_at - now < ttl / 2


_EPOCH = select(DirectorEpochRow.value).where(DirectorEpochRow.id == 1).scalar_subquery()
"""``services.director_epoch.current_epoch`` as a column of another read."""
_FULL_EPOCH = select(DirectorEpochRow.full_value).where(DirectorEpochRow.id == 1).scalar_subquery()
"""The epoch of the newest change that may touch every device, likewise."""

_DEVICES = cast("Table", DeviceRow.__table__)
REPORTED_RUNTIMES = _DEVICES.c.report["runtimes"].label("reported_runtimes")
"""The runtime inventory of the device's newest report as a column: a full answer reads it with the device
instead of loading the whole deferred report in a statement of its own."""

_DEVICE_EPOCHS_RUNTIMES = select(DeviceRow, _EPOCH, _FULL_EPOCH, REPORTED_RUNTIMES).where(
    DeviceRow.id == bindparam("device_id")
)
"""A full answer's one read of its own: the device, the director epochs and the reported runtimes (built
once: the statement and its cache key are reused by every answer)."""

_ISSUE = (
    update(_DEVICES)
    .where(_DEVICES.c.id == bindparam("device_id"), _DEVICES.c.desired_generation == bindparam("held"))
    .values(
        desired_generation=bindparam("generation"),
        desired_digest=bindparam("digest"),
        desired_envelope=bindparam("envelope", type_=_DEVICES.c.desired_envelope.type),
        desired_expires_at=bindparam("expires_at", type_=_DEVICES.c.desired_expires_at.type),
        desired_epoch=bindparam("epoch"),
    )
)
"""Issue a generation: a compare-and-set on the generation read, so two replicas racing issue one
generation and never the same number twice (a Core statement built once)."""


class _Unread(enum.Enum):
    """``desired_content``'s default: the device's reported runtimes are read from its row."""

    UNREAD = "unread"


SignedTargetLookup = Callable[[str], "TargetRef | None"]
"""The image repository's signed target at a path (``TufRuntime.signed_target``), or None."""


def no_signed_targets(_path: str) -> TargetRef | None:
    """A ``SignedTargetLookup`` for a repository that has published nothing (tests, bulk enrollment)."""
    return None


@dataclass(frozen=True)
class DesiredChoice:
    """Which artifact each slot of one device should run, before anything is signed."""

    hardware_class: str
    slots: dict[str, ArtifactRow]
    disabled_artifacts: list[str]
    probe: dict[str, Any] | None = None
    """The device's probe order (``protocol.probe.ProbeOrder``), if a probe is waiting for it."""
    update_window: str = "any"
    """The device's update window: its class's, or the class's first override matching its labels."""
    window_exempt_slots: tuple[str, ...] = ()
    """Slots an urgent rollout (``ignore_windows``) moves: they switch whatever the window."""
    config: dict[str, Any] | None = None
    """The merged remote agent configuration (``services.agent_config``); ``None``: none set."""

    def assignments(self, signed_target: SignedTargetLookup) -> dict[str, Assignment]:
        """Each slot's assignment: the artifact's ``manifest.json`` named by its TUF target, as the release
        key signed it. Nothing is parsed: the registered manifest row gives the target's path.

        An artifact not (yet) in the signed targets is named by its registered manifest (canonical form);
        a device refuses it (``target_not_in_tuf``) until it is published, as it must."""
        out: dict[str, Assignment] = {}
        for slot, artifact in self.slots.items():
            body = artifact.manifest
            path = manifest_target_path(body["model"], body["version"], artifact.hardware_class)
            target = signed_target(path) or TargetRef(
                path=path,
                length=len(canonical_json(body)),
                hashes=TargetHashes(sha256=artifact.manifest_sha256),
            )
            out[slot] = Assignment(artifact_id=artifact.id, manifest=target)
        return out

    def digest(self, slots: dict[str, Assignment]) -> str:
        """:func:`content_digest` of this choice with its ``slots`` resolved (``assignments``)."""
        return content_digest(
            self.hardware_class,
            slots,
            self.disabled_artifacts,
            self.probe,
            update_window=self.update_window,
            window_exempt_slots=self.window_exempt_slots,
            config=self.config,
        )


def content_digest(
    hardware_class: str,
    slots: dict[str, Assignment],
    disabled: list[str],
    probe: dict[str, Any] | None = None,
    *,
    update_window: str = "any",
    window_exempt_slots: tuple[str, ...] = (),
    config: dict[str, Any] | None = None,
) -> str:
    """What decides whether the content changed: the assignments (artifact ids and manifest targets), the
    class, the disabled list, the probe order, the update window (and exempt slots) and the agent config.
    Fields at their defaults are left out, so a device whose content did not change keeps its digest."""
    body: dict[str, Any] = {
        "hardware_class": hardware_class,
        "slots": {slot: a.model_dump(mode="json") for slot, a in slots.items()},
        "disabled": disabled,
    }
    if probe is not None:
        body["probe"] = probe
    if update_window != "any":
        body["update_window"] = update_window
    if window_exempt_slots:
        body["window_exempt_slots"] = list(window_exempt_slots)
    if config:
        body["config"] = config
    return hashlib.sha256(canonical_json(body)).hexdigest()


def desired_content(
    session: Session,
    device: DeviceRow,
    view: ClassView | None = None,
    *,
    runtimes: dict[str, Any] | _Unread | None = _Unread.UNREAD,
) -> DesiredChoice:
    """Slots and disabled artifacts for one device (the caller holds a transaction). ``view``: its class's
    rows at the current director epoch (``services.director_view``), read here when not given.
    ``runtimes``: the device's reported runtimes (``reported_runtimes``) when the caller read them with the
    device; by default ``device_runtimes(device)``, which loads the deferred report."""
    if isinstance(runtimes, _Unread):
        runtimes = device_runtimes(device)
    if view is None:
        view = load_class_view(session, device.hardware_class, current_epoch(session))
    device_pins: dict[str, str] = {}
    if device.id in view.pinned_devices:
        device_pins = {
            slot: artifact_id
            for slot, artifact_id in session.execute(
                select(PinRow.slot, PinRow.artifact_id).where(
                    PinRow.scope == "device", PinRow.target == device.id
                )
            )
        }
    # class pins, then what active rollouts serve this device, then device pins (explicit operator choice)
    chosen: dict[str, str] = dict(view.class_pins)
    urgent: set[str] = set()
    chosen.update(rollout_overlay(session, device, urgent, view.rollouts))
    chosen.update(device_pins)
    slots: dict[str, ArtifactRow] = {}
    disabled: list[str] = []
    for slot, artifact_id in sorted(chosen.items()):
        artifact = view.artifacts.get(artifact_id) or session.get(ArtifactRow, artifact_id)
        if artifact is None:
            continue
        if artifact.disabled:
            disabled.append(artifact.id)
            continue
        if not device_can_run(artifact, runtimes):  # the device would refuse it: not assigned
            continue
        slots[slot] = artifact
    document = view.class_document
    window = device_window(document, device.labels or {}) if document is not None else "any"
    layers = list(view.config_layers)
    if device.id in view.configured_devices:
        layers += [
            config_layer(r)
            for r in session.execute(
                select(AgentConfigRow).where(
                    AgentConfigRow.scope == "device", AgentConfigRow.target == device.id
                )
            ).scalars()
        ]
    config, _sources = effective_config(layers_of(layers, device.labels or {}))
    return DesiredChoice(
        device.hardware_class,
        slots,
        sorted(disabled),
        probe_section(session, device) if device.id in view.probed_devices else None,
        update_window=window,
        window_exempt_slots=tuple(sorted(urgent & set(slots))),
        config=config or None,
    )


def reported_runtimes(value: Any) -> dict[str, Any] | None:
    """Pure: the ``runtimes`` of a device's newest report as the director judges them (``None``: not
    reported, or not an inventory)."""
    return value if isinstance(value, dict) else None


def device_runtimes(device: DeviceRow) -> dict[str, Any] | None:
    """The runtime inventory of the device's newest report (``None``: it never reported one)."""
    if device.report_boot_id is None:  # never reported (set with the report): skip the deferred column
        return None
    return reported_runtimes((device.report or {}).get("runtimes"))


def device_can_run(artifact: ArtifactRow, runtimes: dict[str, Any] | None) -> bool:
    """``check_device_runs`` as a yes/no for the director on a device's reported ``runtimes``
    (``device_runtimes``); a device pin is refused with the reason."""
    if runtimes is None:
        return True
    try:
        check_device_runs(RuntimeSpec.model_validate(artifact.manifest.get("runtime") or {}), runtimes)
    except (InvalidDocumentError, ValueError):
        return False
    return True


def resolve_desired_state(
    session: Session,
    device_id: str,
    *,
    key: Ed25519PrivateKey,
    now: datetime,
    ttl: timedelta,
    held_generation: int | None = None,
    signed_target: SignedTargetLookup = no_signed_targets,
    views: DirectorViews | None = None,
    authenticate: Callable[[DeviceRow | None], DeviceRow] | None = None,
) -> DesiredAnswer:
    """The device's current signed desired state, issuing a new generation when needed.

    Fast path: a stored document computed at the current director epoch and not yet half-expired is
    returned as is, without recomputing the content. ``views``: the process's class views
    (``services.director_view``); without, the class's rows are read for this one answer.
    ``authenticate``: the caller's check of the signed request, on the row this transaction reads (one
    transaction authenticates and answers).
    """
    for _attempt in range(3):
        with session.begin():
            # the device and the director epoch in one statement (a full answer's one read of its own)
            found = session.execute(_DEVICE_EPOCHS_RUNTIMES, {"device_id": device_id}).first()
            device = found[0] if found is not None else None
            if authenticate is not None:
                device, authenticate = authenticate(device), None  # once: it consumes the nonce
            if device is None or found is None:
                raise NotFoundError("no such device", code="device_not_found", got=device_id)
            if device.revoked_at is not None:
                raise AuthenticationError("this device has been revoked", code="device_revoked")
            epoch = int(found[1])
            if (
                device.desired_generation > 0
                and stored_document_current(
                    desired_epoch=device.desired_epoch,
                    director_mark=device.director_mark,
                    full_epoch=int(found[2]),
                )
                and device.desired_expires_at is not None
                and device.desired_expires_at - now >= ttl / 2
            ):
                return _answer(device, held_generation, epoch, ttl)
            view = (
                views.get(session, device.hardware_class, epoch)
                if views is not None
                else load_class_view(session, device.hardware_class, epoch)
            )
            choice = desired_content(session, device, view, runtimes=reported_runtimes(found[3]))
            slots = choice.assignments(signed_target)
            digest = choice.digest(slots)
            if (
                not needs_new_generation(
                    digest=digest,
                    stored_digest=device.desired_digest,
                    stored_expires_at=device.desired_expires_at,
                    now=now,
                    ttl=ttl,
                )
                and device.desired_envelope is not None  # deferred: read only when it may be answered
            ):
                device.desired_epoch = epoch
                return _answer(device, held_generation, epoch, ttl)
            generation = device.desired_generation + 1
            state = DesiredState(
                device_id=device.id,
                hardware_class=choice.hardware_class,
                generation=generation,
                issued_at=now,
                expires_at=now + ttl,
                slots=slots,  # typed parts are taken as they are, not validated again
                disabled_artifacts=choice.disabled_artifacts,
                probe=choice.probe,
                update_window=choice.update_window,
                window_exempt_slots=list(choice.window_exempt_slots),
                config=choice.config,
            )
            envelope = sign_desired_state(state, key)
            # a Core UPDATE answers a CursorResult (it has rowcount); Session.execute is typed as Result
            result = cast(
                "CursorResult[Any]",
                session.execute(
                    _ISSUE,
                    {
                        "device_id": device.id,
                        "held": device.desired_generation,
                        "generation": generation,
                        "digest": digest,
                        "envelope": envelope,
                        "expires_at": now + ttl,
                        "epoch": epoch,
                    },
                ),
            )
            if result.rowcount == 1:
                return DesiredAnswer(generation, envelope, epoch, now + ttl / 2)
        session.expire_all()
    raise ServiceUnavailableError("could not issue a desired state", code="desired_state_contention")


def _answer(device: DeviceRow, held_generation: int | None, epoch: int, ttl: timedelta) -> DesiredAnswer:
    reissue_at = device.desired_expires_at - ttl / 2 if device.desired_expires_at is not None else None
    if held_generation == device.desired_generation:
        return DesiredAnswer(device.desired_generation, None, epoch, reissue_at)
    return DesiredAnswer(device.desired_generation, device.desired_envelope, epoch, reissue_at)
