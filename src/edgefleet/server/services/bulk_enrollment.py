"""Enroll many devices at once, straight into the database: for fleet-scale tests and benchmarks.

Each device still has its own Ed25519 key (the caller generated it; only the public key is given) and signs
its own requests afterwards; what is skipped is the one-time token and one HTTP round trip per device. There
is no HTTP route to this: it needs the database itself, which is already the operator's full authority (as
``edgefleet token create`` bootstraps a token), so it opens nothing an attacker on the network could use.

``InField`` starts the devices as a fleet that has been running for a while rather than as new ones: each
has a last report (the same for all, e.g. its active version) and its current desired state, computed by
the director's own rules (``services.desired_state``) and signed with the director key, as its first poll
would have issued it. Its first poll can then be conditional and answered 304, as a device's poll is after
months in the field; anything that changes its desired state afterwards is a full answer as always.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from edgefleet.protocol.desired_state import DesiredState, DeviceReport
from edgefleet.protocol.errors import NotFoundError
from edgefleet.server.services.audit import record
from edgefleet.server.services.desired_state import (
    SignedTargetLookup,
    desired_content,
    no_signed_targets,
)
from edgefleet.server.services.device_reports import report_columns
from edgefleet.server.services.director_epoch import current_epoch
from edgefleet.server.services.director_view import ClassView, load_class_view
from edgefleet.server.store.devices import DeviceRow
from edgefleet.server.store.registry import HardwareClassRow
from edgefleet.trust.director import ed25519_keyid, load_public_key_pem, sign_desired_state

__all__ = ["BULK_ENROLLMENT_ACTOR", "InField", "enroll_bulk"]

BULK_ENROLLMENT_ACTOR = "bulk-enrollment"
_BATCH_ROWS = 5_000


@dataclass(frozen=True)
class InField:
    """Start each device with a last report and its current signed desired state (generation 1)."""

    key: Ed25519PrivateKey
    """The director key (the server's ``keys/director.key``)."""
    report: dict[str, Any]
    """Each device's last report (``DeviceReport``)."""
    last_seen_at: datetime
    ttl: timedelta = timedelta(days=7)
    signed_target: SignedTargetLookup = no_signed_targets
    """The server's ``TufRuntime.signed_target`` for published artifacts; by default none is."""

    def reported(self) -> dict[str, Any]:
        """The report's columns (the same for every device: computed once)."""
        return report_columns(DeviceReport.parse(self.report))

    def columns(
        self,
        session: Session,
        row: dict[str, Any],
        view: ClassView,
        now: datetime,
        reported: dict[str, Any],
    ) -> dict[str, Any]:
        """The device's report and desired-state columns, as its report and first poll would set them
        (``row``: its enrollment columns; ``reported``: ``self.reported()``)."""
        device = DeviceRow(**(row | reported))  # transient: what the director reads of the device
        choice = desired_content(session, device, view)
        slots = choice.assignments(self.signed_target)
        state = DesiredState(
            device_id=device.id,
            hardware_class=choice.hardware_class,
            generation=1,
            issued_at=now,
            expires_at=now + self.ttl,
            slots=slots,
            disabled_artifacts=choice.disabled_artifacts,
            probe=choice.probe,
            update_window=choice.update_window,
            window_exempt_slots=list(choice.window_exempt_slots),
            config=choice.config,
        )
        digest = choice.digest(slots)
        return {
            **reported,
            "last_seen_at": self.last_seen_at,
            "desired_generation": 1,
            "desired_digest": digest,
            "desired_envelope": sign_desired_state(state, self.key),
            "desired_expires_at": now + self.ttl,
            "desired_epoch": view.epoch,
        }


def enroll_bulk(
    session: Session,
    public_keys_pem: Sequence[str],
    *,
    hardware_class: str,
    now: datetime,
    labels: Sequence[dict[str, str]] | None = None,
    actor: str = BULK_ENROLLMENT_ACTOR,
    in_field: InField | None = None,
) -> list[str]:
    """Register one device per public key (in batches of 5,000 rows, one transaction); returns their ids
    in order. The devices start never seen (``last_seen_at`` empty: offline until they poll), or with
    ``in_field`` as devices that have been running (a last report, a current desired state)."""
    with session.begin():
        if (
            session.execute(
                select(HardwareClassRow.name).where(HardwareClassRow.name == hardware_class)
            ).scalar_one_or_none()
            is None
        ):
            raise NotFoundError("no such hardware class", code="class_not_found", got=hardware_class)
        ids: list[str] = []
        rows: list[dict[str, Any]] = []
        view = load_class_view(session, hardware_class, current_epoch(session)) if in_field else None
        reported = in_field.reported() if in_field is not None else {}
        for i, pem in enumerate(public_keys_pem):
            device_id = "dev_" + secrets.token_hex(10)
            ids.append(device_id)
            rows.append(
                {
                    "id": device_id,
                    "public_key_pem": pem,
                    "public_key_sha256": ed25519_keyid(load_public_key_pem(pem)),
                    "hardware_class": hardware_class,
                    "labels": dict(labels[i]) if labels else {},
                    "enrollment_token_id": "bulk",
                    "enrolled_at": now,
                    "agent_version": "",
                    "report_sequence": 0,
                    "desired_generation": 0,
                    "desired_epoch": 0,
                }
            )
            if in_field is not None and view is not None:
                rows[-1] |= in_field.columns(session, rows[-1], view, now, reported)
            if len(rows) >= _BATCH_ROWS:
                session.execute(insert(DeviceRow), rows)
                rows = []
        if rows:
            session.execute(insert(DeviceRow), rows)
        record(
            session,
            actor=actor,
            action="device.enroll_bulk",
            target=hardware_class,
            now=now,
            details={"devices": len(ids), "in_field": in_field is not None},
        )
    return ids
