"""Model health over time: the history API's series and the dashboard page (server-drawn SVG, data tables),
and every refused range or unknown name as a 4xx with its own code, on the page and from the API."""

from __future__ import annotations

from datetime import timedelta

import pytest

from .conftest import browser, make_token, sign_in

CLASS = "medical-cart-cpu"


@pytest.fixture
def slower(world):
    """Half the fleet moves to v2, which answers in 80 ms instead of 10 ms, twenty minutes in."""
    fleet, v1, v2, devices = world
    fleet.clock.now += timedelta(minutes=15)
    for identity, ddir in devices[:3]:
        fleet.serve(identity, ddir, v1, requests=40, latency_ms=10)
    for identity, ddir in devices[3:]:
        fleet.serve(identity, ddir, v2, requests=40, latency_ms=80, errors=4)
    fleet.clock.now += timedelta(minutes=2)
    return fleet


def _history(fleet, **params):
    return fleet.client.get("/v1/fleet/health/history", params=params, headers=fleet.admin)


def test_versions_are_separate_series_and_the_slower_one_shows(slower):
    r = _history(slower, hardware_class=CLASS, range="hour")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["versions"] == ["digits/1.0.0", "digits/2.0.0"]
    assert body["range"]["source"] == "minute"
    assert body["range"]["bucket_s"] == 60
    assert len(body["buckets"]) in (60, 61)  # whole minutes covering the hour
    p95 = body["metrics"]["latency_p95_ms"]["series"]
    v1 = [v for v in p95["digits/1.0.0"] if v is not None]
    v2 = [v for v in p95["digits/2.0.0"] if v is not None]
    assert len(v1) == 2
    assert len(v2) == 1
    assert v2[0] > v1[-1] * 4
    requests = body["metrics"]["requests"]["series"]
    assert sum(v or 0 for v in requests["digits/1.0.0"]) == 6 * 50 + 3 * 40
    errors = [v for v in body["metrics"]["error_rate"]["series"]["digits/2.0.0"] if v is not None]
    assert errors == [pytest.approx(0.1)]
    assert body["empty"] is False


def test_week_reads_hour_rollups_with_the_same_sums(slower):
    hour = _history(slower, hardware_class=CLASS, range="hour").json()
    week = _history(slower, hardware_class=CLASS, range="week").json()
    assert week["range"]["source"] == "hour"
    assert week["range"]["bucket_s"] == 3600
    assert len(week["buckets"]) in (168, 169)
    for version in ("digits/1.0.0", "digits/2.0.0"):
        minute_total = sum(v or 0 for v in hour["metrics"]["requests"]["series"][version])
        hour_total = sum(v or 0 for v in week["metrics"]["requests"]["series"][version])
        assert minute_total == hour_total > 0


def test_one_version_and_one_site(slower):
    body = _history(slower, hardware_class=CLASS, range="hour", model_version="digits/2.0.0").json()
    assert body["versions"] == ["digits/2.0.0"]
    body = _history(slower, hardware_class=CLASS, range="hour", site="site-0").json()
    total = sum(v or 0 for s in body["metrics"]["requests"]["series"].values() for v in s)
    assert 0 < total < 6 * 50 + 6 * 40


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        (
            {"range": "custom", "start": "2030-01-02T00:00:00Z", "end": "2030-01-01T00:00:00Z"},
            422,
            "history_range_inverted",
        ),
        (
            {"range": "custom", "start": "2000-01-01T00:00:00Z", "end": "2000-03-01T00:00:00Z"},
            422,
            "history_range_too_long",
        ),
        (
            {"range": "custom", "start": "2000-01-01T00:00:00Z", "end": "2000-01-02T00:00:00Z"},
            422,
            "history_range_past_retention",
        ),
        (
            {"range": "custom", "start": "2999-01-01T00:00:00Z", "end": "2999-01-02T00:00:00Z"},
            422,
            "history_range_in_future",
        ),
        ({"range": "custom", "start": "2030-01-01T00:00:00Z"}, 422, "history_range_incomplete"),
        ({"range": "fortnight"}, 422, "history_range_unknown"),
        ({"hardware_class": "no-such-class"}, 404, "history_unknown_class"),
        ({"model_version": "digits/9.9.9"}, 404, "history_unknown_version"),
        ({"site": "atlantis"}, 404, "history_unknown_site"),
    ],
)
def test_bad_input_is_a_4xx_with_its_code_from_the_api_and_on_the_page(slower, params, status, code):
    query = {"hardware_class": CLASS, "range": "hour", **params}
    r = _history(slower, **query)
    assert r.status_code == status, r.text
    assert r.json()["code"] == code
    client = browser(slower)
    sign_in(client, make_token(slower, "viewer"))
    page = client.get("/dashboard/history", params=query)
    assert page.status_code == status
    assert 'role="alert"' in page.text
    assert code in page.text
    assert "<svg" not in page.text  # never an empty chart


def test_page_draws_each_metric_with_a_data_table(slower):
    client = browser(slower)
    sign_in(client, make_token(slower, "viewer"))
    page = client.get("/dashboard/history", params={"hardware_class": CLASS, "range": "hour"})
    assert page.status_code == 200, page.text
    text = page.text
    for title in ("Latency p95", "Latency p50", "Error rate", "Input faults", "Requests", "Shadow agreement"):
        assert f"Data table: {title}" in text
    assert text.count('<svg class="chart"') == 7
    assert text.count('role="img"') >= 7
    assert "digits/2.0.0" in text
    assert 'class="line s1"' in text
    assert "style=" not in text.split("<main", 1)[-1]  # the CSP allows no inline style


def test_a_quiet_range_says_so_instead_of_drawing_nothing(slower):
    slower.clock.now += timedelta(hours=3)
    client = browser(slower)
    sign_in(client, make_token(slower, "viewer"))
    page = client.get("/dashboard/history", params={"hardware_class": CLASS, "range": "hour"})
    assert page.status_code == 200
    assert "No telemetry for medical-cart-cpu" in page.text
    assert "<svg" not in page.text
    assert _history(slower, hardware_class=CLASS, range="hour").json()["empty"] is True


def test_a_version_that_answered_nothing_is_not_drawn_as_a_series_of_gaps(world):
    fleet, _v1, v2, devices = world
    identity, ddir = devices[0]
    fleet.serve(identity, ddir, v2, requests=0, latency_ms=1)  # a window naming 2.0.0 with no request
    body = _history(fleet, hardware_class=CLASS, range="hour").json()
    assert body["versions"] == ["digits/1.0.0"]
    assert "digits/2.0.0" not in body["metrics"]["requests"]["series"]
