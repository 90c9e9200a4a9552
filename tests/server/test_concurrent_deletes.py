"""Twenty callers delete the same model / class at once over real HTTP (issue 14, item 5): exactly one 204,
the others 404, one audit row; on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from edgefleet.protocol import parse_classes_toml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "hardware-classes.toml"
CALLERS = 20


def _race(url: str, headers: dict[str, str], path: str) -> list[tuple[int, str]]:
    barrier = threading.Barrier(CALLERS)
    answers: list[tuple[int, str]] = []
    lock = threading.Lock()

    def one() -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            client.get("/healthz")  # connection open before the start line
            barrier.wait()
            r = client.delete(path)
        with lock:
            answers.append((r.status_code, r.json()["code"] if r.content else ""))

    threads = [threading.Thread(target=one) for _ in range(CALLERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return sorted(answers)


def _audit(url: str, headers: dict[str, str], action: str) -> int:
    r = httpx.get(f"{url}/v1/audit", params={"action": action}, headers=headers, timeout=30)
    return int(r.json()["total"])


@pytest.mark.slow
@pytest.mark.parametrize("rounds", [3])
def test_concurrent_deletes_have_one_winner(live_server_factory, database_url, rounds) -> None:
    server = live_server_factory(database_url=database_url)
    url, h = server.url, server.admin_headers
    doc = next(c for c in parse_classes_toml(EXAMPLES.read_text()) if c.name == "medical-cart-cpu").to_dict()
    for i in range(rounds):
        assert httpx.post(f"{url}/v1/models", json={"name": f"doomed-{i}"}, headers=h).status_code == 201
        answers = _race(url, h, f"/v1/models/doomed-{i}")
        assert answers == [(204, "")] + [(404, "model_not_found")] * (CALLERS - 1), answers
        assert _audit(url, h, "model.delete") == i + 1

        assert httpx.put(f"{url}/v1/classes/{doc['name']}", json=doc, headers=h).status_code == 201
        answers = _race(url, h, f"/v1/classes/{doc['name']}")
        assert answers == [(204, "")] + [(404, "class_not_found")] * (CALLERS - 1), answers
        assert _audit(url, h, "class.delete") == i + 1
