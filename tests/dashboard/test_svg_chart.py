"""The server-drawn chart (pure): missing data is a gap, never a line through zero; a lone point is drawn as
a circle; markers outside the time axis are left out; names are escaped; the SVG describes itself."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from edgefleet.server.dashboard.svg_chart import Marker, line_chart

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
TIMES = [T0 + timedelta(minutes=i) for i in range(5)]


def test_gaps_break_the_line_and_lone_points_are_circles() -> None:
    svg = str(
        line_chart(
            title="Latency p95",
            unit="ms",
            times=TIMES,
            series={"a/1.0.0": [1.0, 2.0, None, 4.0, None], "<b>": [None, None, 3.0, None, None]},
            chart_id="t",
        )
    )
    first = svg.split('<path class="line s0" d="', 1)[1].split('"', 1)[0]
    assert first.count("M") == 2  # two runs: [1, 2] and [4]
    assert first.count("L") == 1
    assert svg.count('<circle class="dot s0"') == 1  # 4.0 stands alone
    assert svg.count('<circle class="dot s1"') == 1
    assert "<b>" not in svg
    assert "&lt;b&gt;" in svg
    assert 'role="img"' in svg
    assert "a/1.0.0: from 1 to 4, highest 4" in svg


def test_markers_inside_the_axis_are_drawn_and_the_axis_can_end_after_the_last_bucket() -> None:
    inside = Marker(at=T0 + timedelta(minutes=4, seconds=30), label="halt ro_1", kind="m-halt")
    outside = Marker(at=T0 - timedelta(minutes=1), label="created ro_1", kind="m-event")
    svg = str(
        line_chart(
            title="x",
            unit="ms",
            times=TIMES,
            series={"v": [1.0] * 5},
            markers=[inside, outside],
            chart_id="t",
        )
    )
    assert (
        "halt ro_1" not in svg
    )  # past the last bucket's start, and no end_at given: neither drawn nor named
    assert 'class="marker m-halt"' not in svg
    svg = str(
        line_chart(
            title="x",
            unit="ms",
            times=TIMES,
            series={"v": [1.0] * 5},
            markers=[inside, outside],
            chart_id="t",
            end_at=T0 + timedelta(minutes=5),
        )
    )
    assert svg.count('class="marker m-halt"') == 1
    assert "halt ro_1" in svg.split("<desc", 1)[1].split("</desc>", 1)[0]
    assert 'class="marker m-event"' not in svg
    assert "created ro_1" not in svg


def test_a_threshold_is_a_line_and_counts_in_the_scale() -> None:
    svg = str(
        line_chart(title="x", unit="ratio", times=TIMES, series={"v": [0.1] * 5}, threshold=1.5, chart_id="t")
    )
    assert '<line class="threshold"' in svg
    assert ">1.5</text>" in svg  # the scale's top tick reaches the threshold
