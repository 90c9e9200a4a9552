"""The agent's telemetry structs (``edgefleet.protocol.wire.telemetry``) mirror the pydantic models,
refuse what the models' own rules refuse, and what the recorder and the uploader send validates with the
models and dumps back to the same bytes."""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from tests.agent.wire_conformance import DELETE, assert_mirrors, with_value

from edgefleet.agent.telemetry import FixedResources, TelemetryQueue, TelemetryRecorder, TelemetryUploader
from edgefleet.protocol import telemetry as model
from edgefleet.protocol import telemetry_kinds
from edgefleet.protocol.canonical import canonical_json
from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.protocol.wire import telemetry as wire
from edgefleet.protocol.wire.base import read_part

NAMES = [
    "LatencyHistogram",
    "ShadowStats",
    "HealthChecks",
    "ModelWindow",
    "ResourceSample",
    "SlotStatus",
    "TelemetryWindow",
    "EventRecord",
    "TelemetryRecord",
    "TelemetryBatch",
]


@pytest.mark.parametrize("name", NAMES)
def test_struct_mirrors_model(name: str) -> None:
    assert_mirrors(getattr(wire, name), getattr(model, name))


def test_the_models_take_their_rules_from_the_pydantic_free_module() -> None:
    for name in telemetry_kinds.__all__:
        if name in model.__all__:
            assert getattr(model, name) is getattr(telemetry_kinds, name), name
    assert model.ShadowSample is wire.ShadowSample is telemetry_kinds.ShadowSample
    assert model.TelemetryBatch.SCHEMA_VERSION == telemetry_kinds.TELEMETRY_BATCH_SCHEMA_VERSION
    assert tuple(telemetry_kinds.PRIORITY_BY_EVENT_KIND) == model.EVENT_KINDS


AT = "2026-12-06T08:00:00Z"
WINDOW: dict[str, Any] = {
    "start_at": AT,
    "end_at": "2026-12-06T08:01:00Z",
    "models": [
        {
            "model_version": "1.0.0",
            "requests": 3,
            "errors_by_code": {"runtime_error": 1},
            "latency": {"buckets": {"100": 3}, "sum_ms": 30.0, "max_ms": 12.0},
            "shadow": {"compared": 1, "agreement_sum": 1.0, "abs_diff_max": 0.5},
        }
    ],
    "degraded_s": {"cpu-fallback": 2.5},
    "resources": {"cpu_temp_c": 50.0, "mem_total_bytes": 10},
    "slots": [{"slot": "default", "requests": 3, "update_status": "committed"}],
}
EVENT: dict[str, Any] = {"at": AT, "kind": "update", "code": "install_committed", "details": {"a": 1}}
BATCH: dict[str, Any] = {
    "schema_version": 1,
    "device_id": "dev-1",
    "sent_at": AT,
    "records": [
        {"boot_id": "b1", "sequence": 1, "kind": "window", "window": WINDOW},
        {"boot_id": "b1", "sequence": 2, "kind": "event", "event": EVENT},
    ],
    "dropped": {"metrics": 2},
    "queue_bytes": 100,
    "queue_records": 2,
}


REFUSED = [
    # the models' own validators (rules a JSON Schema cannot carry)
    ("records.0.window", DELETE),  # a window record without its window
    ("records.0.event", EVENT),  # ... or with an event beside it
    ("records.1.kind", "window"),
    ("records.0.window.models.0.shadow.abs_diff_max", float("inf")),  # finite only
    ("records.0.window.models.0.shadow.abs_diff_mean_sum", float("nan")),
    # constraints
    ("records", []),
    ("records.0.boot_id", "b/1"),
    ("records.0.sequence", 0),
    ("records.1.event.kind", "reboot"),
    ("records.1.event.code", "Not A Code"),
    ("records.1.event.code", "update\n"),  # Python's ``$`` matches before a final newline, the models' not
    ("records.0.boot_id", "b1\n"),
    ("records.0.window.models.0.model_version", ""),
    ("records.0.window.models.0.latency.buckets", {"209": 1}),
    ("records.0.window.models.0.latency.buckets", {"3": -1}),
    ("records.0.window.models.0.latency.sum_ms", -1.0),
    ("records.0.window.models.0.errors_by_code", {f"e{i}": 1 for i in range(65)}),
    ("records.0.window.degraded_s", {"cpu": -0.5}),
    ("records.0.window.resources.mem_total_bytes", -1),
    ("records.0.window.slots.0.update_status", "Committed"),
    ("records.0.window.start_at", "yesterday"),
    ("dropped", {"metrics": 2**53 + 1}),
    ("device_id", "d" * 65),
    ("sent_at", DELETE),
]


@pytest.mark.parametrize(("path", "value"), REFUSED, ids=[p for p, _ in REFUSED])
def test_both_refuse(path: str, value: Any) -> None:
    doc = with_value(BATCH, path, value)
    with pytest.raises(InvalidDocumentError):
        model.TelemetryBatch.parse(doc)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(doc, wire.TelemetryBatch, str_keys=True)
    if "inf" not in repr(value) and "nan" not in repr(value):  # JSON has no non-finite numbers
        with pytest.raises(InvalidDocumentError):
            read_part(json.dumps(doc).encode(), wire.TelemetryBatch, kind="telemetry batch")


def test_both_accept_and_agree() -> None:
    # accepted as it stands: what test_both_refuse changes is what each side refuses
    msgspec.convert(BATCH, wire.TelemetryBatch, str_keys=True)
    theirs = model.TelemetryBatch.parse(BATCH).to_dict()
    # JSON bytes: ``read_document`` decodes to a dict first, and ``msgspec.convert`` (strict) does not turn a
    # histogram's text keys into bucket numbers; the agent never reads a batch, it only writes one
    mine = wire.to_body(read_part(json.dumps(BATCH).encode(), wire.TelemetryBatch, kind="telemetry batch"))
    assert canonical_json(mine) == canonical_json(theirs)


class Sink:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def append(self, **record: Any) -> int:
        self.records.append(record)
        return len(self.records)


def _busy_recorder(sink: Any, mono: list[float]) -> TelemetryRecorder:
    """A recorder fed every kind of call, with plain ints and numpy floats where floats go."""
    wall = [datetime(2026, 12, 6, 8, 0, 0, 123400, tzinfo=timezone.utc)]

    def wall_clock() -> datetime:
        wall[0] += timedelta(seconds=1.5)
        return wall[0]

    rec = TelemetryRecorder(
        sink,
        boot_id="b1",
        clock=lambda: mono[0],
        wall_clock=wall_clock,
        resources=FixedResources(wire.ResourceSample(cpu_temp_c=51.5, cpu_throttle_count=3, load_1m=0.25)),
    )
    rec.set_slot_states(lambda: {"default": ("Committed", None), "aux": ("failed", "Health Check!")})
    for i in range(20):
        rec.record_request(
            f"v{i % 3}", "cpu" if i % 2 else "fallback", i * 3, None if i % 5 else "runtime_error"
        )
    rec.record_request("v1", "cpu", 7, "tensor_nan")
    rec.record_request("v1", "cpu", np.float64(7.5), "server_busy")
    rec.record_request("v2", "cpu", float("nan"))
    sample = model.ShadowSample(3, 1, 1, 2, 1, 3, 5)  # ints first: the figures must still be floats
    rec.record_shadow(True, model_version="v9", sample=sample)
    rec.record_shadow(
        np.float64(0.5),
        model_version="v9",
        sample=model.ShadowSample(4, None, 5, np.float64(0.25), 0.125, 3, np.float64(4.5)),
    )
    rec.record_shadow(
        0.0, model_version="v9", sample=model.ShadowSample(2, 1, 0, float("inf"), 1.0, 1.0, 2.0)
    )
    rec.record_shadow_error("v9", "Model Crash")
    rec.record_shadow_skipped("v9")
    rec.record_health_check("v2", passed=False, error_code="golden_mismatch")
    rec.record_health_check("v2", passed=True)
    rec.record_degraded_time("cpu-fallback", 3)
    rec.record_event(
        "update", "Install Committed", {"n": 3, "np": np.float64(2.5), "nan": float("nan"), "o": [1]}
    )
    rec.record_event("no-such-kind", "x")
    return rec


def test_what_the_recorder_queues_validates_and_dumps_back_the_same() -> None:
    sink, mono = Sink(), [0.0]
    rec = _busy_recorder(sink, mono)
    mono[0] = 61.0
    rec.record_request("v0", "cpu", 1.0)  # closes the first window
    rec.flush()
    kinds = [r["kind"] for r in sink.records]
    assert kinds == ["event", "event", "window", "window"]
    for record in sink.records:
        cls = model.TelemetryWindow if record["kind"] == "window" else model.EventRecord
        again = cls.model_validate(record["body"]).model_dump(mode="json")
        assert canonical_json(record["body"]) == canonical_json(again)
    first = model.TelemetryWindow.model_validate(sink.records[2]["body"])
    shadow = next(m for m in first.models if m.model_version == "v9").shadow
    assert (shadow.compared, shadow.diff_compared, shadow.non_finite, shadow.abs_diff_max) == (3, 2, 1, 2.0)
    assert [(s.slot, s.update_status, s.update_failure_code) for s in first.slots] == [
        ("aux", "failed", "health_check_"),
        ("default", "committed", None),
    ]
    event = sink.records[0]["body"]
    assert event["details"] == {"n": 3, "np": 2.5, "nan": None, "o": "[1]"}
    assert event["at"].endswith("Z")


def test_what_the_uploader_posts_is_a_valid_batch(tmp_path: Path) -> None:
    queue = TelemetryQueue(tmp_path / "queue.db")
    mono = [0.0]
    rec = _busy_recorder(queue, mono)
    rec.flush()
    posted: list[bytes] = []

    class Transport:
        def post(self, body: bytes, *, content_encoding: str) -> dict[str, Any]:
            assert content_encoding == "gzip"
            assert body[:8] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00"  # a gzip member, no name, mtime 0
            posted.append(gzip.decompress(body))
            return {"acked": {"b1": [1, 2, 3]}}

    uploader = TelemetryUploader(
        queue,
        Transport(),
        device_id="dev-1",
        bandwidth_bytes_per_s=1e9,
        clock=lambda: mono[0],
        wall_clock=lambda: datetime(2026, 12, 6, 9, 0, tzinfo=timezone.utc),
    )
    outcome = uploader.upload_once()
    assert (outcome.error, outcome.acked_records, outcome.backlog) == (None, 3, 0)
    (body,) = posted
    batch = model.TelemetryBatch.parse(json.loads(body))
    assert sorted(r.kind for r in batch.records) == ["event", "event", "window"]  # fresh windows first
    mine = read_part(body, wire.TelemetryBatch, kind="telemetry batch")
    assert len(mine.records) == 3
    queue.close()
