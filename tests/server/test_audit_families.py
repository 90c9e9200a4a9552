"""The audit's action filter refuses families the platform never records (``invalid_audit_action``); that
is only honest while ``AUDIT_FAMILIES`` lists every family the source records."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.server.services.audit import AUDIT_FAMILIES, check_action_filter
from edgefleet.server.services.probes import SECURITY_ACTION

SOURCE = Path(__file__).parents[2] / "src" / "edgefleet" / "server"
ACTION = re.compile(r"""\baction=f?["']([a-z_]+)\.""")


def test_every_recorded_action_belongs_to_a_listed_family() -> None:
    families = {SECURITY_ACTION.partition(".")[0]}
    for path in SOURCE.rglob("*.py"):
        families.update(ACTION.findall(path.read_text()))
    assert families <= set(AUDIT_FAMILIES)
    assert {"device", "rollout", "config", "tuf"} <= families  # the scan sees the source


@pytest.mark.parametrize(
    ("action", "wanted"),
    [("device.*", ("device.", True)), ("enrollment_token.*", ("enrollment_token.", True)),
     ("device.decommission", ("device.decommission", False)),
     ("tuf.publish.latency_unmeasured_accepted", ("tuf.publish.latency_unmeasured_accepted", False))],
)  # fmt: skip
def test_an_action_or_a_family_is_a_filter(action: str, wanted: tuple[str, bool]) -> None:
    assert check_action_filter(action) == wanted


@pytest.mark.parametrize(
    "action", ["*", "", "device", "device.", "dev.*", "DEVICE.enroll", "device.%", "*.create"]
)
def test_a_filter_that_can_never_match_is_refused(action: str) -> None:
    with pytest.raises(InvalidDocumentError) as info:
        check_action_filter(action)
    assert info.value.code == "invalid_audit_action"
    assert info.value.details["got"] == action
    assert "webhook" in info.value.details["expected"]
