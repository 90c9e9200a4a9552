"""The device's OS/CPU inventory: read on this host, clipped to the report's limits, valid in a report."""

from __future__ import annotations

import os
import platform

from edgefleet.agent.host_inventory import clip, cpu_model_from_cpuinfo, host_inventory
from edgefleet.protocol.desired_state import DeviceReport
from edgefleet.protocol.limits import MAX_HOST_TEXT_CHARS

X86 = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n"
ARM = "processor\t: 0\nBogoMIPS\t: 48.00\nCPU part\t: 0xd42\n\nHardware\t: NVIDIA Jetson Orin\n"


def test_cpu_model_from_cpuinfo():
    assert cpu_model_from_cpuinfo(X86) == "Intel(R) Xeon(R) CPU @ 2.20GHz"
    assert cpu_model_from_cpuinfo(ARM) == "NVIDIA Jetson Orin"  # processor: 0 is a number, not a model
    assert cpu_model_from_cpuinfo("") == ""


def test_clip_drops_control_characters_and_bounds_the_length():
    assert clip("  a\x00b\nc  ", 10) == "abc"
    assert clip("x" * 500, MAX_HOST_TEXT_CHARS) == "x" * MAX_HOST_TEXT_CHARS


def test_this_host_is_reported_within_the_schema():
    host = host_inventory()
    assert host.os == platform.system().lower()
    assert host.cpu.arch == platform.machine()
    assert host.cpu.cores == os.cpu_count()
    assert host.python == platform.python_version()
    report = DeviceReport.parse(
        {"sequence": 1, "boot_id": "b", "reported_at": "2026-12-05T00:00:00+00:00", "host": host.to_dict()}
    )
    assert report.host is not None
    assert report.host.cpu.model == host.cpu.model
