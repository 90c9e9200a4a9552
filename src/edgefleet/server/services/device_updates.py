"""Whether a device is behind its desired state, and why: read from its newest report, judged by the agent.

The agent judges each slot (``agent.install.machine.behind``) and says so in ``SlotReport.desired``,
``behind`` (why: ``pending``, ``installing``, ``failed:<code>``, ``rolled_back:<reason>``,
``refused:<why>``...) and ``retrying``; the device's status is ``updating`` meanwhile. The server does not
judge it again: it lists what the report says, one row per lagging slot, for the device document
(``device_to_wire``), the CLI and the dashboard, which only render it.
"""

from __future__ import annotations

from typing import Any, TypedDict

__all__ = ["SlotBehind", "slots_behind"]


class SlotBehind(TypedDict):
    slot: str
    desired: str | None
    """The artifact id the desired state names (``None``: the report did not say)."""
    active: str | None
    """The artifact id serving now."""
    why: str
    retrying: bool
    """The agent retries the desired artifact with backoff; false: it waits for a new desired state."""


def slots_behind(report: dict[str, Any] | None) -> list[SlotBehind]:
    """The slots a device report says lag their desired artifact, sorted by slot (empty: up to date, or no
    report, or an agent too old to say)."""
    slots = (report or {}).get("slots") or {}
    rows: list[SlotBehind] = []
    for name, s in sorted(slots.items()):
        if not isinstance(s, dict) or not isinstance(s.get("behind"), str) or not s["behind"]:
            continue
        rows.append(
            SlotBehind(
                slot=str(name),
                desired=_text(s.get("desired")),
                active=_text(s.get("active")),
                why=s["behind"],
                retrying=s.get("retrying") is True,
            )
        )
    return rows


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
