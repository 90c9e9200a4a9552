"""A report over the signed channel, as the fleet views and the rollout engine read it back.

The report path reads a few columns of the device (not its stored report) and writes the report's columns
with one UPDATE: every column the device list, the dashboard and the engine filter on follows the newest
report, and only a changed runtime inventory moves the director epoch (assignments are judged again).
"""

from __future__ import annotations

from datetime import timedelta

from edgefleet.server.services.device_reports import active_summary
from edgefleet.server.services.director_epoch import current_epoch
from edgefleet.server.services.inventory import inventory_summary
from edgefleet.server.store.devices import DeviceRow

CPU = {"onnxruntime": {"version": "1.18.0", "execution_providers": ["CPUExecutionProvider"]}}
NEWER = {"onnxruntime": {"version": "1.19.0", "execution_providers": ["CPUExecutionProvider"]}}


def _row(fleet, device_id: str) -> tuple[DeviceRow, int]:
    with fleet.app.state.context.db.session() as session, session.begin():
        row = session.get(DeviceRow, device_id)
        assert row is not None
        _ = row.report  # the deferred column, loaded inside the transaction
        return row, current_epoch(session)


def test_a_report_sets_what_fleet_views_and_the_engine_read(fleet):
    identity, ddir = fleet.enroll()
    channel = fleet.channel(identity, ddir)
    sequence = iter(range(1, 100))

    def report(runtimes=None, **fields) -> bool:
        body = {
            "sequence": next(sequence),
            "boot_id": "boot-a",
            "reported_at": fleet.clock().isoformat(),
            "agent_version": "9.9.9",
            "slots": {"default": {"active": "art_0123456789abcdef", "state": "idle"}},
            "runtimes": runtimes,
            **fields,
        }
        return channel.request("POST", "/v1/device/report", json_body=body).json()["accepted"]

    _, epoch = _row(fleet, identity.device_id)
    fleet.clock.now += timedelta(seconds=5)
    assert report(
        CPU,
        status="error",
        last_error={"code": "disk_full", "message": "no space", "at": fleet.clock().isoformat()},
        host={"os": "linux", "os_version": "12", "kernel": "6.1", "python": "3.11"},
    )
    row, after_first = _row(fleet, identity.device_id)
    assert row.report is not None
    assert (row.report_status, row.report_error_code, row.report_boot_id) == ("error", "disk_full", "boot-a")
    assert (row.report_sequence, row.agent_version) == (1, "9.9.9")
    assert row.report_active == active_summary(row.report) == "default=art_0123456789abcdef"
    assert row.inventory == inventory_summary(row.report)
    assert row.inventory is not None
    assert row.inventory["os"] == "linux"
    assert row.last_seen_at == fleet.clock()
    assert after_first == epoch + 1  # a first inventory: what the device can run is judged again

    assert report(CPU, status="ok")  # the same inventory: nothing to judge again
    row, after_same = _row(fleet, identity.device_id)
    assert (row.report_status, row.report_error_code, row.report_sequence) == ("ok", None, 2)
    assert after_same == after_first
    assert report(None)  # an older agent's report without an inventory: nothing to judge either
    assert _row(fleet, identity.device_id)[1] == after_first
    assert report(NEWER)
    row, after_newer = _row(fleet, identity.device_id)
    assert after_newer == after_first + 1
    assert row.report is not None
    assert row.report["runtimes"]["onnxruntime"]["version"] == "1.19.0"
    assert row.report_sequence == 4

    body = {"sequence": 2, "boot_id": "boot-a", "reported_at": fleet.clock().isoformat(), "status": "error"}
    assert channel.request("POST", "/v1/device/report", json_body=body).json() == {"accepted": False}
    assert _row(fleet, identity.device_id)[0].report_status == "ok"  # an older report changes nothing
