"""Enroll many devices at once, straight into the database: for fleet-scale tests and benchmarks.

Each device still has its own Ed25519 key (the caller generated it; only the public key is given) and signs
its own requests afterwards; what is skipped is the one-time token and one HTTP round trip per device. There
is no HTTP route to this: it needs the database itself, which is already the operator's full authority (as
``edgefleet token create`` bootstraps a token), so it opens nothing an attacker on the network could use.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from edgefleet.protocol.errors import NotFoundError
from edgefleet.server.services.audit import record
from edgefleet.server.store.devices import DeviceRow
from edgefleet.server.store.registry import HardwareClassRow
from edgefleet.trust.director import ed25519_keyid, load_public_key_pem

__all__ = ["BULK_ENROLLMENT_ACTOR", "enroll_bulk"]

BULK_ENROLLMENT_ACTOR = "bulk-enrollment"
_BATCH_ROWS = 5_000


def enroll_bulk(
    session: Session,
    public_keys_pem: Sequence[str],
    *,
    hardware_class: str,
    now: datetime,
    labels: Sequence[dict[str, str]] | None = None,
    actor: str = BULK_ENROLLMENT_ACTOR,
) -> list[str]:
    """Register one device per public key (in batches of 5,000 rows, one transaction); returns their ids
    in order. The devices start never seen (``last_seen_at`` empty: offline until they poll)."""
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
            details={"devices": len(ids)},
        )
    return ids
