"""Repeating an idempotent call changes nothing and writes no second audit row (issue 14, item 6)."""

from __future__ import annotations


def _total(api, action: str) -> int:
    r = api.client.get("/v1/audit", params={"action": action}, headers=api.admin)
    return int(r.json()["total"])


def test_posting_the_same_artifact_again_is_not_audited_again(api, manifest_for) -> None:
    manifest = manifest_for()
    first = api.client.post("/v1/artifacts", json={"manifest": manifest}, headers=api.admin)
    assert first.status_code == 201
    for _ in range(3):
        again = api.client.post("/v1/artifacts", json={"manifest": manifest}, headers=api.admin)
        assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])
    assert _total(api, "artifact.create") == 1


def test_revoking_a_revoked_token_again_is_not_audited_again(api) -> None:
    created = api.client.post("/v1/tokens", json={"name": "ci", "role": "viewer"}, headers=api.admin).json()
    for _ in range(3):
        assert api.client.delete(f"/v1/tokens/{created['id']}", headers=api.admin).status_code == 204
    assert _total(api, "token.revoke") == 1
    r = api.client.get("/v1/models", headers={"Authorization": f"Bearer {created['token']}"})
    assert r.status_code == 401


def test_repeating_a_disable_or_an_unchanged_patch_is_not_audited_again(api, manifest_for) -> None:
    art = api.client.post("/v1/artifacts", json={"manifest": manifest_for()}, headers=api.admin).json()
    for _ in range(2):
        r = api.client.patch(
            f"/v1/artifacts/{art['id']}", json={"disabled": True, "reason": "recall"}, headers=api.admin
        )
        assert r.json()["disabled"] is True
    assert _total(api, "artifact.disable") == 1
    for _ in range(2):
        r = api.client.patch("/v1/models/detector", json={"description": "boxes v2"}, headers=api.admin)
        assert r.status_code == 200
    assert _total(api, "model.update") == 1
