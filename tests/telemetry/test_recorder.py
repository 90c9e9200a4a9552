"""The recorder (windows by an injected clock, thread safety, bounded inputs), resources, histograms, and
the uploader's pure parts (batch plan, bandwidth budget, acks)."""

from __future__ import annotations

import math
import random
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgefleet.agent.telemetry import FixedResources, SecuritySinkAdapter, SysResources, TelemetryRecorder
from edgefleet.agent.telemetry.queue import QueuedRecord
from edgefleet.agent.telemetry.recorder import MAX_MODELS, OVERFLOW_MODEL
from edgefleet.agent.telemetry.uploader import BandwidthBudget, parse_acks, plan_batch
from edgefleet.protocol.telemetry import (
    LATENCY_MAX_INDEX,
    LATENCY_MIN_MS,
    LatencyHistogram,
    TelemetryWindow,
    latency_bucket_index,
)
from edgefleet.protocol.wire.telemetry import ResourceSample
from edgefleet.trust.events import SecurityEvent


class Sink:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def append(self, **record: Any) -> int:
        self.records.append(record)
        return len(self.records)

    def windows(self) -> list[TelemetryWindow]:
        return [TelemetryWindow.model_validate(r["body"]) for r in self.records if r["kind"] == "window"]


class Mono:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _recorder(sink: Sink, mono: Mono, **kw: Any) -> TelemetryRecorder:
    return TelemetryRecorder(
        sink, boot_id="b1", clock=mono, wall_clock=lambda: datetime(2026, 1, 1, tzinfo=timezone.utc), **kw
    )


def test_windows_close_by_the_injected_clock() -> None:
    sink, mono = Sink(), Mono()
    rec = _recorder(sink, mono, window_s=60)
    rec.record_request("1.0", "cpu", 5.0)
    mono.t = 59.9
    assert rec.tick() is False
    rec.record_request("1.0", "cpu", 7.0, error_code="Runtime Error!")
    mono.t = 60.0
    rec.record_request("1.0", "cpu", 9.0)  # the first call in the next window closes the previous one
    windows = sink.windows()
    assert len(windows) == 1
    model = windows[0].models[0]
    assert (model.requests, model.errors_by_code) == (2, {"runtime_error_": 1})
    assert model.latency.count == 2
    mono.t = 1000.0  # a long idle period: one window closes, the idle ones are not invented
    assert rec.tick() is True
    assert len(sink.windows()) == 2
    assert sink.windows()[1].models[0].requests == 1


def test_concurrent_recording_counts_every_request() -> None:
    sink, mono = Sink(), Mono()
    rec = _recorder(sink, mono)
    threads = [
        threading.Thread(target=lambda: [rec.record_request("v", "cpu", 1.0) for _ in range(5000)])
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rec.flush()
    assert sum(m.requests for w in sink.windows() for m in w.models) == 20_000


def test_model_versions_shadow_health_degraded_and_events() -> None:
    sink, mono = Sink(), Mono()
    rec = _recorder(sink, mono, resources=FixedResources(ResourceSample(cpu_temp_c=51.5)))
    for i in range(MAX_MODELS + 3):
        rec.record_request(f"v{i}", "cpu", 1.0)
    rec.record_shadow(True, model_version="v1")
    rec.record_shadow(0.5, model_version="v1")
    rec.record_health_check("v2", passed=False, error_code="golden_mismatch")
    rec.record_health_check("v2", passed=True)
    rec.record_degraded_time("cpu-fallback", 3.5)
    rec.record_degraded_time("cpu-fallback", float("nan"))
    SecuritySinkAdapter(rec).record(
        SecurityEvent(code="bad_signature", message="m", at=datetime.now(timezone.utc), details={"k": "v"})
    )
    rec.flush()
    (window,) = sink.windows()
    names = [m.model_version for m in window.models]
    assert len(names) == MAX_MODELS + 1
    assert OVERFLOW_MODEL in names
    assert next(m for m in window.models if m.model_version == OVERFLOW_MODEL).requests == 3
    v1 = next(m for m in window.models if m.model_version == "v1")
    assert (v1.shadow.compared, v1.shadow.agreement_sum) == (2, 1.5)
    v2 = next(m for m in window.models if m.model_version == "v2")
    assert v2.health_checks.failed_by_code == {"golden_mismatch": 1}
    assert window.degraded_s == {"cpu-fallback": 3.5}
    assert window.resources is not None
    assert window.resources.cpu_temp_c == 51.5
    event = next(r for r in sink.records if r["kind"] == "event")
    assert (event["label"], event["priority"], event["body"]["code"]) == (
        "event.security",
        2,
        "bad_signature",
    )


def test_a_failing_queue_never_breaks_serving() -> None:
    class Broken:
        def append(self, **_: Any) -> int:
            raise OSError("disk full")

    mono = Mono()
    rec = TelemetryRecorder(Broken(), boot_id="b", clock=mono)  # type: ignore[arg-type]
    rec.record_request("v", "cpu", 1.0)
    mono.t = 61
    rec.record_request("v", "cpu", 1.0)
    assert rec.record_event("update", "x") is None
    assert rec.write_failures == 2


def test_resources_read_from_sys_and_absent_sensors_are_absent(tmp_path: Path) -> None:
    sys_root, proc_root = tmp_path / "sys", tmp_path / "proc"
    for zone, temp in (("thermal_zone0", "45000\n"), ("thermal_zone1", "61500\n")):
        (sys_root / "class" / "thermal" / zone).mkdir(parents=True)
        (sys_root / "class" / "thermal" / zone / "temp").write_text(temp)
    for cpu, count in (("cpu0", "3"), ("cpu1", "4")):
        (sys_root / "devices" / "system" / "cpu" / cpu / "thermal_throttle").mkdir(parents=True)
        (
            sys_root / "devices" / "system" / "cpu" / cpu / "thermal_throttle" / "core_throttle_count"
        ).write_text(count)
    proc_root.mkdir()
    (proc_root / "meminfo").write_text("MemTotal:  2048 kB\nMemFree: 10 kB\nMemAvailable:  1024 kB\n")
    (proc_root / "loadavg").write_text("0.42 0.30 0.10 1/100 1234\n")
    sample = SysResources(disk_path=tmp_path, sys_root=sys_root, proc_root=proc_root).sample()
    assert sample.cpu_temp_c == 61.5
    assert sample.cpu_throttle_count == 7
    assert (sample.mem_total_bytes, sample.mem_available_bytes) == (2048 * 1024, 1024 * 1024)
    assert sample.load_1m == 0.42
    assert sample.disk_total_bytes is not None
    assert sample.disk_total_bytes > 0
    bare = SysResources(disk_path=tmp_path / "missing", sys_root=tmp_path / "no", proc_root=tmp_path / "no")
    empty = bare.sample()
    assert (empty.cpu_temp_c, empty.cpu_throttle_count, empty.mem_total_bytes, empty.disk_free_bytes) == (
        None,
        None,
        None,
        None,
    )


latencies = st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=200)


@given(st.lists(latencies, min_size=1, max_size=6))
def test_merged_histograms_equal_one_histogram_of_everything(parts: list[list[float]]) -> None:
    merged, whole = LatencyHistogram(), LatencyHistogram()
    for part in parts:
        h = LatencyHistogram()
        for x in part:
            h.add(x)
            whole.add(x)
        merged.merge(LatencyHistogram.model_validate(h.model_dump(mode="json")))  # through the wire form
    assert merged.buckets == whole.buckets
    assert merged.quantile_ms(0.95) == whole.quantile_ms(0.95)


@given(latencies, st.sampled_from([0.5, 0.95, 0.99]))
def test_quantiles_are_within_one_bucket_of_the_truth(values: list[float], q: float) -> None:
    h = LatencyHistogram()
    for x in values:
        h.add(x)
    true = sorted(values)[max(1, math.ceil(q * len(values))) - 1]
    got = h.quantile_ms(q)
    assert got is not None
    if latency_bucket_index(true) < LATENCY_MAX_INDEX:  # the last bucket is open-ended
        assert got >= true
        assert got <= max(true, LATENCY_MIN_MS) * 2 ** (1 / 8) * (1 + 1e-9)


def _q(seq: int, size: int = 100, boot: str = "b") -> QueuedRecord:
    return QueuedRecord(
        seq=seq, boot_id=boot, kind="window", label="window", priority=0, size_bytes=size, body={}
    )


def test_plan_batch_puts_fresh_first_then_oldest_without_repeats_within_bounds() -> None:
    fresh = [_q(50), _q(49)]
    oldest = [_q(i) for i in range(1, 11)]
    assert [r.seq for r in plan_batch(fresh, oldest, max_records=5, max_bytes=10_000)] == [50, 49, 1, 2, 3]
    assert [r.seq for r in plan_batch([], oldest, max_records=50, max_bytes=350)] == [1, 2, 3]
    assert [r.seq for r in plan_batch([], [_q(1, size=10_000)], max_records=5, max_bytes=10)] == [1]
    assert [r.seq for r in plan_batch([_q(3)], [_q(3), _q(4)], max_records=5, max_bytes=10_000)] == [3, 4]


def test_bandwidth_budget_holds_the_average_rate() -> None:
    budget = BandwidthBudget(1000, burst_bytes=5000, now_s=0.0)
    sent, now = 0, 0.0
    rng = random.Random(7)
    while now < 100:
        size = rng.randint(100, 3000)
        wait = budget.wait_s(size, now)
        if wait > 0:
            now += wait
            continue
        budget.spend(size, now)
        sent += size
    assert sent <= 1000 * now + 5000
    assert sent >= 1000 * now * 0.9
    with pytest.raises(ValueError, match="positive"):
        BandwidthBudget(0, burst_bytes=1, now_s=0)


def test_acks_are_parsed_strictly() -> None:
    assert parse_acks({"acked": {"b": [1, 2, "3", True], "c": "x"}}) == {("b", 1), ("b", 2)}
    assert parse_acks({"acked": [1, 2]}) == set()
    assert parse_acks({}) == set()
