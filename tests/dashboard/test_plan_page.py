"""The dashboard's "plan a rollout" page: operators run the dry run on the fleet's twin from a form; viewers
are refused; a bad spec is shown on the form with the API's code; nothing starts."""

from __future__ import annotations

import pytest
from tests.dashboard.conftest import browser, csrf_of, make_token, sign_in


@pytest.fixture
def operator(world):
    client = browser(world[0])
    sign_in(client, make_token(world[0], "operator", "olive"))
    return client


def test_operators_plan_a_rollout_from_the_form(world, operator):
    fleet, _v1, v2, _devices = world
    rollouts = operator.get("/dashboard/rollouts")
    assert 'href="/dashboard/plan"' in rollouts.text
    form = operator.get("/dashboard/plan")
    assert form.status_code == 200
    assert 'name="spec"' in form.text
    r = operator.post(
        "/dashboard/plan",
        data={"csrf": csrf_of(form.text), "model": "digits", "targets": f"medical-cart-cpu={v2}",
              "labels": "", "spec": '{"stages": [{"count": 1}, {"percent": 100}]}', "seed": "3"},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert 'id="plan-outcome"' in r.text
    assert "<svg" in r.text
    assert "devices running the candidate" in r.text
    assert "poll interval" in r.text  # the assumptions are listed
    assert "Result: 6 devices, seed 3" in r.text
    assert fleet.client.get("/v1/rollouts", headers=fleet.admin).json()["total"] == 0  # nothing started


def test_a_bad_spec_is_shown_on_the_form_with_the_api_code(world, operator):
    _fleet, _v1, v2, _devices = world
    form = operator.get("/dashboard/plan")
    r = operator.post(
        "/dashboard/plan",
        data={"csrf": csrf_of(form.text), "model": "digits", "targets": f"medical-cart-cpu={v2}",
              "spec": '{"stages": [{"percent": 150}]}'},
    )  # fmt: skip
    assert r.status_code == 422
    assert "invalid_document" in r.text
    assert "spec.stages.0.percent" in r.text
    assert 'name="model"' in r.text  # the form comes back, filled in
    wrong = operator.post(
        "/dashboard/plan",
        data={"csrf": csrf_of(form.text), "model": "digits", "targets": f"factory-gateway-gpu={v2}"},
    )
    assert wrong.status_code == 422
    assert "wrong_hardware_class" in wrong.text


def test_viewers_cannot_plan_and_a_forged_post_is_refused(world):
    fleet, _v1, v2, _devices = world
    viewer = browser(fleet)
    sign_in(viewer, make_token(fleet, "viewer", "victor"))
    assert viewer.get("/dashboard/plan").status_code == 403
    assert 'href="/dashboard/plan"' not in viewer.get("/dashboard/rollouts").text
    page = viewer.get("/dashboard/rollouts")
    refused = viewer.post(
        "/dashboard/plan",
        data={"csrf": csrf_of(page.text), "model": "digits", "targets": f"medical-cart-cpu={v2}"},
    )
    assert refused.status_code == 403
    operator = browser(fleet)
    sign_in(operator, make_token(fleet, "operator", "oscar"))
    forged = operator.post("/dashboard/plan", data={"csrf": "nope", "model": "digits", "targets": "a=b"})
    assert forged.status_code in (400, 403)
