"""Ingest through the real ASGI app on SQLite and PostgreSQL: exact aggregation, idempotency, identity,
staleness, faults on the link."""

from __future__ import annotations

import gzip
from datetime import timedelta
from typing import Any

import pytest

from edgefleet.agent.telemetry.uploader import TELEMETRY_PATH
from edgefleet.protocol.canonical import canonical_json
from edgefleet.protocol.errors import EdgefleetError, RateLimitedError, ServiceUnavailableError
from edgefleet.protocol.request_signing import sign_request
from edgefleet.protocol.telemetry import LatencyHistogram

from .conftest import Device, Fleet


def _serve(device: Device, version: str, latencies: list[float], errors: int = 0, rung: str = "cpu") -> None:
    for i, latency in enumerate(latencies):
        device.recorder.record_request(version, rung, latency, "runtime_error" if i < errors else None)


class LostAck:
    """The server stores the batch, the answer never arrives."""

    def __init__(self, inner: Any, lose: int = 1) -> None:
        self.inner, self.lose = inner, lose

    def post(self, body: bytes, *, content_encoding: str) -> dict[str, Any]:
        answer = self.inner.post(body, content_encoding=content_encoding)
        if self.lose > 0:
            self.lose -= 1
            raise ServiceUnavailableError("connection reset", code="server_unreachable")
        return dict(answer)


class Failing:
    def __init__(self, error: EdgefleetError) -> None:
        self.error, self.calls = error, 0

    def post(self, body: bytes, *, content_encoding: str) -> dict[str, Any]:
        self.calls += 1
        raise self.error


def test_fleet_health_merges_windows_and_devices_exactly(fleet: Fleet) -> None:
    a = fleet.device(labels={"site": "ward-1"})
    b = fleet.device(labels={"site": "ward-2"})
    expected = LatencyHistogram()
    lat_a1 = [1.0 + i * 0.37 for i in range(200)]
    lat_a2 = [5.0 + i for i in range(50)]
    lat_b = [0.5 + i * 1.9 for i in range(120)]
    _serve(a, "1.0.0", lat_a1, errors=7)
    _serve(b, "1.0.0", lat_b, errors=3)
    fleet.clock.advance(61)
    _serve(a, "1.0.0", lat_a2)
    _serve(a, "2.0.0", [3.0] * 10, errors=1, rung="fallback")
    fleet.clock.advance(61)
    for d in (a, b):
        d.recorder.tick()
        d.drain()
    for x in lat_a1 + lat_a2 + lat_b:
        expected.add(x)

    health = fleet.health(since=(fleet.clock() - timedelta(minutes=10)).isoformat())
    v1 = next(g for g in health["by_model_version"] if g["model_version"] == "1.0.0")
    assert v1["requests"] == 370
    assert v1["errors"] == 10
    assert v1["errors_by_code"] == {"runtime_error": 10}
    assert v1["latency_ms"]["buckets"] == {str(k): v for k, v in sorted(expected.buckets.items())}
    assert v1["latency_ms"]["p95"] == expected.quantile_ms(0.95)
    assert v1["latency_ms"]["p99"] == expected.quantile_ms(0.99)
    assert v1["devices"] == 2
    assert health["totals"]["requests"] == 380
    assert health["totals"]["requests_by_rung"] == {"cpu": 370, "fallback": 10}
    assert health["devices"]["reporting"] == 2
    assert {g["site"]: g["requests"] for g in health["by_site"]} == {"ward-1": 260, "ward-2": 120}
    # The whole fleet is read from per-minute rollups, a label selection from the windows themselves:
    # both paths give the same numbers for each site.
    since = (fleet.clock() - timedelta(minutes=10)).isoformat()
    for site_group in health["by_site"]:
        selected = fleet.health(since=since, label=[f"site={site_group['site']}"])["totals"]
        for field in ("requests", "errors", "errors_by_code", "requests_by_rung", "latency_ms", "devices"):
            assert selected[field] == site_group[field], (site_group["site"], field)
    only_v2 = fleet.health(model_version="2.0.0", since=(fleet.clock() - timedelta(minutes=10)).isoformat())
    assert only_v2["totals"]["requests"] == 10
    assert only_v2["totals"]["error_rate"] == pytest.approx(0.1)


def test_a_lost_ack_causes_a_resend_that_is_counted_once(fleet: Fleet) -> None:
    d = fleet.device()
    _serve(d, "1.0.0", [2.0] * 40)
    fleet.clock.advance(61)
    d.recorder.tick()
    d.recorder.record_event("rollback", "health_check_failed", {"artifact": "a1"})
    d.uploader = d.make_uploader(LostAck(d.transport))
    lost = d.uploader.upload_once()
    assert lost.error is not None
    assert d.queue.stats().records == 2  # nothing deleted without an ack
    d.drain()
    assert d.queue.stats().records == 0
    view = fleet.device_telemetry(d.id)
    assert view["totals"]["requests"] == 40
    assert [e["code"] for e in view["events"]] == ["health_check_failed"]
    assert view["queue"]["records_duplicate"] == 2
    assert view["queue"]["records_accepted"] == 2


def _signed_post(
    fleet: Fleet, device: Device, body: bytes, *, claim: str | None = None, key: Any = None
) -> Any:
    headers = sign_request(
        key or device.ddir.read_key(),
        device_id=claim or device.id,
        method="POST",
        path=TELEMETRY_PATH,
        body=body,
        now_s=fleet.clock().timestamp(),
    )
    headers.update({"content-type": "application/json", "content-encoding": "gzip"})
    return fleet.client.post(TELEMETRY_PATH, content=body, headers=headers), headers


def _batch(
    device_id: str, *, seq: int = 1, requests: int = 5, sent_at: str = "2026-06-01T12:00:00+00:00"
) -> bytes:
    window = {
        "start_at": "2026-06-01T11:58:00+00:00",
        "end_at": "2026-06-01T11:59:00+00:00",
        "models": [
            {"model_version": "1.0.0", "requests": requests, "latency": {"buckets": {"60": requests}}}
        ],
    }
    doc = {
        "schema_version": 1,
        "device_id": device_id,
        "sent_at": sent_at,
        "records": [{"boot_id": "b1", "sequence": seq, "kind": "window", "window": window}],
    }
    return gzip.compress(canonical_json(doc), mtime=0)


def test_a_replayed_request_is_refused_and_counts_nothing(fleet: Fleet) -> None:
    d = fleet.device()
    body = _batch(d.id)
    first, headers = _signed_post(fleet, d, body)
    assert first.status_code == 200, first.text
    assert first.json()["acked"] == {"b1": [1]}
    replay = fleet.client.post(TELEMETRY_PATH, content=body, headers=headers)
    assert replay.status_code == 401
    assert replay.json()["code"] == "replayed_request"
    assert fleet.device_telemetry(d.id)["totals"]["requests"] == 5


def test_batches_for_another_device_are_refused(fleet: Fleet) -> None:
    a, b = fleet.device(), fleet.device()
    # a signs, but the batch says it is b's telemetry
    r, _ = _signed_post(fleet, a, _batch(b.id))
    assert r.status_code == 403
    assert r.json()["code"] == "device_mismatch"
    # a claims b's identity in the headers: the signature does not verify under b's key
    r, _ = _signed_post(fleet, a, _batch(b.id), claim=b.id, key=a.ddir.read_key())
    assert r.status_code == 401
    assert fleet.device_telemetry(b.id)["totals"]["requests"] == 0
    assert fleet.device_telemetry(a.id)["totals"]["requests"] == 0


def test_bad_bodies_are_refused_with_stable_codes(fleet: Fleet) -> None:
    d = fleet.device()
    r, _ = _signed_post(fleet, d, b"not gzip at all")
    assert (r.status_code, r.json()["code"]) == (422, "malformed_gzip")
    bomb = gzip.compress(b"{" + b" " * (5 * 1024**2), mtime=0)
    r, _ = _signed_post(fleet, d, bomb)
    assert (r.status_code, r.json()["code"]) == (413, "document_too_large")
    r, _ = _signed_post(fleet, d, gzip.compress(b'{"schema_version": 1, "records": []}', mtime=0))
    assert (r.status_code, r.json()["code"]) == (422, "invalid_document")


def test_stale_data_is_marked_stale_and_late_windows_say_how_late(fleet: Fleet) -> None:
    d = fleet.device()
    _serve(d, "1.0.0", [1.0])
    fleet.clock.advance(61)
    d.recorder.tick()
    d.drain()
    fresh = fleet.device_telemetry(d.id)
    assert fresh["data"]["stale"] is False
    assert fleet.health()["devices"]["stale_data"] == 0
    # the link goes down for an hour; the device keeps recording
    for _ in range(60):
        _serve(d, "1.0.0", [1.0])
        fleet.clock.advance(60)
        d.recorder.tick()
    offline = fleet.device_telemetry(d.id)
    assert offline["data"]["stale"] is True
    assert offline["data"]["lag_s"] > 3000
    health = fleet.health()
    assert health["devices"]["stale_data_ids"] == [d.id]
    d.drain()
    back = fleet.device_telemetry(d.id, limit=500)
    assert back["data"]["stale"] is False
    assert back["windows"][-1]["late"] is False  # sent on time, before the outage
    oldest = back["windows"][-2]  # the first window of the outage
    assert oldest["late"] is True
    assert oldest["late_s"] > 3000
    assert back["windows"][0]["late"] is False
    assert back["totals"]["requests"] == 61


def test_a_device_clock_that_jumps_while_offline_keeps_order_by_sequence(fleet: Fleet) -> None:
    d = fleet.device()
    _serve(d, "1.0.0", [1.0] * 3)
    fleet.clock.advance(61)
    d.recorder.tick()
    d.wall_offset = -timedelta(days=3)  # the RTC lost power: the clock jumped three days back
    _serve(d, "1.0.0", [1.0] * 4)
    fleet.clock.advance(61)
    d.recorder.tick()
    d.reboot("boot2")
    _serve(d, "1.0.0", [1.0] * 5)
    fleet.clock.advance(61)
    d.recorder.tick()
    d.drain()
    view = fleet.device_telemetry(d.id)
    sequences = [w["sequence"] for w in view["windows"]]
    assert sequences == sorted(sequences, reverse=True)
    assert [w["models"][0]["requests"] for w in view["windows"] if w["models"]] == [5, 4, 3]
    assert {w["boot_id"] for w in view["windows"]} == {"boot1", "boot2"}
    # windows land on the server's clock: none three days in the past
    assert all(w["late_s"] < 7200 for w in view["windows"][:2])
    assert view["totals"]["requests"] == 12


def test_server_errors_and_rate_limits_back_off_and_keep_the_queue(fleet: Fleet) -> None:
    d = fleet.device()
    _serve(d, "1.0.0", [1.0])
    fleet.clock.advance(61)
    d.recorder.tick()
    for error in (
        EdgefleetError("boom", code="internal_error", details={"status": 500}),
        RateLimitedError("slow down", details={"retry_after_s": 120}),
    ):
        uploader = d.make_uploader(Failing(error))
        delays = []
        for _ in range(12):
            outcome = uploader.upload_once()
            assert outcome.error is error
            delays.append(uploader.next_delay_s(outcome))
        assert d.queue.stats().records == 1
        assert max(delays) <= uploader.timing.backoff_cap_s
        assert max(delays[-3:]) > delays[0] or delays[0] >= 120
        if isinstance(error, RateLimitedError):
            assert min(delays) >= 120
    d.drain()
    assert fleet.device_telemetry(d.id)["totals"]["requests"] == 1


def test_backlog_sends_newest_health_first_then_drains_in_order(fleet: Fleet) -> None:
    d = fleet.device()
    for i in range(30):
        _serve(d, "1.0.0", [1.0] * (i + 1))
        fleet.clock.advance(60)
        d.recorder.tick()
    d.uploader = d.make_uploader(d.transport, max_records=10, fresh_windows=1)
    newest_seq = d.queue.newest(1, kind="window")[0].seq
    first = d.uploader.upload_once()
    assert first.acked_records == 10
    view = fleet.device_telemetry(d.id, limit=500)
    got = sorted(w["sequence"] for w in view["windows"])
    assert got == [*range(1, 10), newest_seq]
    assert view["data"]["stale"] is False
    d.drain()
    view = fleet.device_telemetry(d.id, limit=500)
    assert sorted(w["sequence"] for w in view["windows"]) == list(range(1, 31))
    assert view["totals"]["requests"] == sum(range(1, 31))


def test_events_survive_a_full_queue_and_drops_are_reported(fleet: Fleet, tmp_path: Any) -> None:
    from edgefleet.agent.telemetry import TelemetryQueue, TelemetryRecorder

    d = fleet.device()
    d.queue.close()
    d.queue = TelemetryQueue(tmp_path / "small.db", max_bytes=8 * 1024)
    d.recorder = TelemetryRecorder(d.queue, boot_id="b", clock=lambda: fleet.clock.mono, wall_clock=d.wall)
    d.uploader = d.make_uploader(d.transport)
    d.recorder.record_event("update", "install_started", {"artifact": "x"})
    for _ in range(500):  # days offline with the cap reached
        _serve(d, "1.0.0", [1.0, 2.0, 400.0], errors=1)
        fleet.clock.advance(60)
        d.recorder.tick()
    d.recorder.record_event("security", "bad_signature", {})
    stats = d.queue.stats()
    assert stats.bytes <= 8 * 1024
    assert stats.dropped["window"] > 400
    d.drain()
    view = fleet.device_telemetry(d.id)
    assert sorted(e["code"] for e in view["events"]) == ["bad_signature", "install_started"]
    assert view["queue"]["dropped"]["window"] == stats.dropped["window"]
    assert fleet.health()["dropped"]["window"] == stats.dropped["window"]


def test_viewers_read_health_anonymous_callers_do_not(fleet: Fleet) -> None:
    r = fleet.client.post("/v1/tokens", json={"name": "v", "role": "viewer"}, headers=fleet.admin)
    viewer = {"authorization": f"Bearer {r.json()['token']}"}
    assert fleet.client.get("/v1/fleet/health", headers=viewer).status_code == 200
    assert fleet.client.get("/v1/fleet/health").status_code == 401
    assert fleet.client.get("/metrics").status_code == 401
    bad = fleet.client.get("/v1/fleet/health", params={"since": "2099-01-01T00:00:00Z"}, headers=viewer)
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_since")


def test_metrics_exposes_fleet_aggregates_in_prometheus_format(fleet: Fleet) -> None:
    d = fleet.device()
    _serve(d, "1.0.0", [10.0] * 9, errors=3)
    d.recorder.record_degraded_time("fallback", 12.5)
    fleet.clock.advance(61)
    d.recorder.tick()
    d.drain()
    r = fleet.client.get("/metrics", headers=fleet.admin)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'edgefleet_fleet_error_ratio{model_version="1.0.0"} 0.333333' in text
    assert 'edgefleet_fleet_error_ratio{hardware_class="medical-cart-cpu"} 0.333333' in text
    assert 'edgefleet_degraded_seconds{rung="fallback"} 12.5' in text
    assert "# TYPE edgefleet_fleet_latency_ms gauge" in text


def test_retention_forgets_old_windows(fleet: Fleet) -> None:
    from edgefleet.server.services import telemetry as svc

    d = fleet.device()
    _serve(d, "1.0.0", [1.0] * 2)
    fleet.clock.advance(61)
    d.recorder.tick()
    d.drain()
    fleet.clock.advance(31 * 86400)
    with fleet.app.state.context.db.session() as session:
        deleted = svc.prune_telemetry(session, now=fleet.clock(), freshness=svc.Freshness())
    # the window, its model row, its minute's and its hour's two rollups each (model and window level), and
    # when the device last reported the version
    assert deleted == 7
    since = (fleet.clock() - timedelta(days=399)).isoformat()
    assert fleet.device_telemetry(d.id, since=since)["windows"] == []


def test_device_summaries_agree_between_the_sql_and_the_label_paths(fleet: Fleet) -> None:
    """The whole fleet is summarized by the database, a label selection in Python: same answer."""
    fresh = fleet.device(labels={"fleet": "all", "site": "a"})
    quiet = fleet.device(labels={"fleet": "all", "site": "b"})
    _serve(fresh, "1.0.0", [2.0] * 5)
    _serve(quiet, "1.0.0", [2.0] * 5)
    fleet.clock.advance(61)
    for d in (fresh, quiet):
        d.recorder.tick()
        d.drain()
    fleet.clock.advance(400)  # both windows are now older than the stale threshold ...
    _serve(fresh, "1.0.0", [2.0] * 5)
    fleet.clock.advance(61)
    fresh.recorder.tick()
    fresh.drain()  # ... except the fresh device's new one
    since = (fleet.clock() - timedelta(minutes=30)).isoformat()
    whole = fleet.health(since=since)
    selected = fleet.health(since=since, label=["fleet=all"])
    for section in ("devices", "data", "dropped"):
        assert whole[section] == selected[section], section
    assert whole["devices"]["stale_data_ids"] == [quiet.id]
    assert whole["devices"]["total"] == 2
