"""Shadow agreement statistics: accumulated by the recorder, merged exactly, ingested and read back per
model version on SQLite and PostgreSQL, and windows of agents that sent only the old two fields."""

from __future__ import annotations

import gzip
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgefleet.agent.telemetry import TelemetryRecorder
from edgefleet.protocol.canonical import canonical_json
from edgefleet.protocol.telemetry import LatencyHistogram, ModelWindow, ShadowSample, ShadowStats
from edgefleet.server.services.telemetry import merge_shadow_stats, shadow_stats_json
from edgefleet.server.services.telemetry_sums import shadow_to_wire

from .conftest import Fleet
from .test_ingest import _signed_post
from .test_recorder import Mono, Sink

CANDIDATE = "digits/2.0.0"


def sample(
    rows: int = 1,
    top1: int | None = None,
    within: int = 1,
    max_diff: float = 0.01,
    mean_diff: float = 0.005,
    active_ms: float = 2.0,
    candidate_ms: float = 3.0,
) -> ShadowSample:
    return ShadowSample(rows, top1, within, max_diff, mean_diff, active_ms, candidate_ms)


def test_the_recorder_sums_comparisons_errors_and_skips_into_the_candidates_window() -> None:
    sink, mono = Sink(), Mono()
    rec = TelemetryRecorder(
        sink, boot_id="b1", clock=mono, wall_clock=lambda: datetime(2026, 1, 1, tzinfo=timezone.utc)
    )
    rec.record_request("digits/1.0.0", "preferred", 2.0)
    rec.record_shadow(1.0, model_version=CANDIDATE, sample=sample(rows=4, top1=4, within=3, max_diff=0.2))
    rec.record_shadow(0.5, model_version=CANDIDATE, sample=sample(rows=2, top1=1, within=0, candidate_ms=9.0))
    rec.record_shadow(
        0.0, model_version=CANDIDATE, sample=sample(max_diff=float("inf"), mean_diff=float("inf"))
    )
    rec.record_shadow(1.0, model_version=CANDIDATE)  # an agreement without statistics still counts
    rec.record_shadow_error(CANDIDATE, "inference_failed")
    rec.record_shadow_error(CANDIDATE, "Inference Failed")
    rec.record_shadow_skipped(CANDIDATE)
    rec.flush()
    (window,) = sink.windows()  # validated as the wire document
    active = next(m for m in window.models if m.model_version == "digits/1.0.0")
    assert active.shadow == ShadowStats()
    shadow = next(m for m in window.models if m.model_version == CANDIDATE).shadow
    assert (shadow.compared, shadow.agreement_sum) == (4, 2.5)
    assert (shadow.rows, shadow.top1_rows, shadow.top1_matches) == (7, 6, 5)
    assert (shadow.tolerance_rows, shadow.tolerance_matches) == (7, 4)
    assert (shadow.diff_compared, shadow.non_finite) == (2, 1)
    assert shadow.abs_diff_max == 0.2
    assert shadow.abs_diff_mean_sum == pytest.approx(0.01)
    assert shadow.errors_by_code == {"inference_failed": 2}
    assert shadow.skipped_budget == 1
    assert shadow.active_latency.count == 3
    assert shadow.candidate_latency.count == 3
    assert shadow.candidate_latency.max_ms == 9.0
    assert shadow.candidate_latency.sum_ms == 15.0


samples = st.builds(
    sample,
    rows=st.integers(1, 8),
    top1=st.one_of(st.none(), st.integers(0, 8)),
    within=st.integers(0, 8),
    max_diff=st.floats(0, 10),
    mean_diff=st.floats(0, 10),
    active_ms=st.floats(0.01, 1000),
    candidate_ms=st.floats(0.01, 1000),
)


@given(st.lists(st.lists(samples, max_size=6), min_size=1, max_size=5))
def test_merged_windows_equal_one_window_of_every_comparison(parts: list[list[ShadowSample]]) -> None:
    """Devices and windows merge exactly: on the wire (``ShadowStats.merge``) and as stored on the server
    (``merge_shadow_stats`` of ``shadow_stats_json``)."""
    whole, merged, stored = ShadowStats(), ShadowStats(), {}
    for part in parts:
        window = ShadowStats()
        for s in part:
            window.add(0.5, s)
            whole.add(0.5, s)
        merged.merge(window)
        merge_shadow_stats(stored, shadow_stats_json(window))
    assert flat(merged.model_dump()) == pytest.approx(flat(whole.model_dump()))
    assert flat(stored) == pytest.approx(flat(shadow_stats_json(whole)))


def flat(doc: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Nested numbers as one level of ``a.b.c`` keys (``pytest.approx`` compares flat mappings)."""
    out: dict[str, float] = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_an_old_agents_shadow_fields_still_parse_and_read_as_unknown_statistics() -> None:
    old = ModelWindow.model_validate(
        {"model_version": CANDIDATE, "shadow": {"compared": 4, "agreement_sum": 3.0}}
    )
    assert old.shadow.rows == 0
    assert shadow_stats_json(old.shadow) == {}
    view = shadow_to_wire(old.shadow.compared, old.shadow.agreement_sum, {})
    assert view["agreement"] == 0.75
    for unknown in ("top1_agreement", "tolerance_agreement", "max_abs_diff", "mean_abs_diff"):
        assert view[unknown] is None
    assert view["active_latency_ms"]["count"] == 0


def test_non_finite_or_negative_differences_are_refused_on_the_wire() -> None:
    for bad in ({"abs_diff_max": float("inf")}, {"abs_diff_mean_sum": -1.0}, {"rows": -1}):
        with pytest.raises(ValueError):
            ShadowStats.model_validate(bad)


def _old_agent_batch(device_id: str, *, seq: int, compared: int, agreement_sum: float) -> bytes:
    """What an agent from before the statistics sends: only ``compared`` and ``agreement_sum``."""
    window = {
        "start_at": "2026-06-01T11:58:00+00:00",
        "end_at": "2026-06-01T11:59:00+00:00",
        "models": [
            {
                "model_version": CANDIDATE,
                "requests": 0,
                "shadow": {"compared": compared, "agreement_sum": agreement_sum},
            }
        ],
    }
    doc = {
        "schema_version": 1,
        "device_id": device_id,
        "sent_at": "2026-06-01T12:00:00+00:00",
        "records": [{"boot_id": "old", "sequence": seq, "kind": "window", "window": window}],
    }
    return gzip.compress(canonical_json(doc), mtime=0)


def test_fleet_health_reads_shadow_statistics_per_version_from_new_and_old_agents(fleet: Fleet) -> None:
    new_a = fleet.device(labels={"site": "ward-1"})
    new_b = fleet.device(labels={"site": "ward-1"})
    old = fleet.device(labels={"site": "ward-2"})
    expected_active, expected_candidate = LatencyHistogram(), LatencyHistogram()
    plan: list[tuple[Any, float, ShadowSample]] = [
        (new_a, 1.0, sample(rows=1, top1=1, within=1, max_diff=0.02, mean_diff=0.01, candidate_ms=4.0)),
        (new_a, 0.0, sample(rows=1, top1=0, within=0, max_diff=0.3, mean_diff=0.1, candidate_ms=8.0)),
        (new_b, 1.0, sample(rows=2, top1=2, within=2, max_diff=0.01, mean_diff=0.004, active_ms=1.0)),
    ]
    for device, agreement, s in plan:
        device.recorder.record_request("digits/1.0.0", "preferred", s.active_ms)
        device.recorder.record_shadow(agreement, model_version=CANDIDATE, sample=s)
        expected_active.add(s.active_ms)
        expected_candidate.add(s.candidate_ms)
    new_a.recorder.record_shadow_error(CANDIDATE, "inference_failed")
    new_b.recorder.record_shadow_skipped(CANDIDATE)
    fleet.clock.advance(61)
    for d in (new_a, new_b):
        d.recorder.tick()
        d.drain()
    r, _ = _signed_post(fleet, old, _old_agent_batch(old.id, seq=1, compared=4, agreement_sum=3.0))
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 1

    since = (fleet.clock() - timedelta(minutes=10)).isoformat()
    health = fleet.health(since=since)
    group = next(g for g in health["by_model_version"] if g["model_version"] == CANDIDATE)
    shadow = group["shadow"]
    assert shadow["compared"] == 7
    assert shadow["agreement"] == pytest.approx((2.0 + 3.0) / 7)
    assert shadow["rows"] == 4  # rows come only from the new agents ...
    assert shadow["top1_agreement"] == pytest.approx(3 / 4)
    assert shadow["tolerance_agreement"] == pytest.approx(3 / 4)
    assert shadow["max_abs_diff"] == pytest.approx(0.3)
    assert shadow["mean_abs_diff"] == pytest.approx((0.01 + 0.1 + 0.004) / 3)  # ... and so do the diffs
    assert shadow["errors_by_code"] == {"inference_failed": 1}
    assert shadow["errors"] == 1
    assert shadow["skipped_budget"] == 1
    assert shadow["active_latency_ms"]["buckets"] == {
        str(k): v for k, v in sorted(expected_active.buckets.items())
    }
    assert shadow["candidate_latency_ms"]["p95"] == expected_candidate.quantile_ms(0.95)
    assert shadow["candidate_latency_ms"]["max"] == 8.0
    assert shadow["candidate_over_active_p95"] == pytest.approx(
        expected_candidate.quantile_ms(0.95) / expected_active.quantile_ms(0.95)
    )
    active_group = next(g for g in health["by_model_version"] if g["model_version"] == "digits/1.0.0")
    assert active_group["shadow"]["compared"] == 0

    # The whole fleet reads rollups, a label selection the windows: the same shadow figures per site.
    for site in ("ward-1", "ward-2"):
        rolled = next(g for g in health["by_site"] if g["site"] == site)["shadow"]
        selected = fleet.health(since=since, label=[f"site={site}"], model_version=CANDIDATE)
        assert selected["totals"]["shadow"] == rolled, site
    old_only = next(g for g in health["by_site"] if g["site"] == "ward-2")["shadow"]
    assert (old_only["compared"], old_only["agreement"], old_only["top1_agreement"]) == (4, 0.75, None)

    # One device's view: totals, per version and per window.
    view = fleet.device_telemetry(new_a.id)
    per_version = next(g for g in view["by_model_version"] if g["model_version"] == CANDIDATE)
    assert per_version["shadow"]["top1_agreement"] == 0.5
    assert per_version["shadow"]["candidate_latency_ms"]["count"] == 2
    [window] = view["windows"]
    in_window = next(m for m in window["models"] if m["model_version"] == CANDIDATE)
    assert in_window["shadow"]["max_abs_diff"] == pytest.approx(0.3)

    text = fleet.client.get("/metrics", headers=fleet.admin).text
    assert f'edgefleet_fleet_shadow_comparisons{{model_version="{CANDIDATE}"}} 7' in text
    assert f'edgefleet_fleet_shadow_agreement{{model_version="{CANDIDATE}"}} 0.714286' in text


def test_a_resent_window_does_not_count_its_shadow_statistics_twice(fleet: Fleet) -> None:
    from .test_ingest import LostAck

    d = fleet.device()
    d.recorder.record_shadow(1.0, model_version=CANDIDATE, sample=sample(rows=3, top1=3, within=3))
    fleet.clock.advance(61)
    d.recorder.tick()
    d.uploader = d.make_uploader(LostAck(d.transport))
    assert d.uploader.upload_once().error is not None
    d.drain()
    since = (fleet.clock() - timedelta(minutes=10)).isoformat()
    shadow = next(g for g in fleet.health(since=since)["by_model_version"] if g["model_version"] == CANDIDATE)
    assert (shadow["shadow"]["compared"], shadow["shadow"]["rows"]) == (1, 3)
    assert shadow["shadow"]["candidate_latency_ms"]["count"] == 1
