from __future__ import annotations


def test_healthz_names_the_database(api) -> None:
    r = api.client.get("/healthz")
    assert r.status_code == 200
    assert r.json()["database"] == (
        "postgresql" if api.settings.database_url.startswith("postgresql") else "sqlite"
    )
