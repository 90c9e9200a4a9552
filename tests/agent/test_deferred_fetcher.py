"""The installer's fetcher is built on first use: recovery and serving do not build the TUF stack."""

from __future__ import annotations

import threading
from pathlib import Path

from edgefleet.agent.install.deferred import DeferredFetcher
from edgefleet.agent.install.fetch import ResolvedAssignment
from edgefleet.protocol.desired_state import Assignment


class _Recording:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def resolve(self, assignment: Assignment) -> ResolvedAssignment:
        self.calls.append("resolve")
        raise LookupError("not in this test")

    def fetch(self, assignment: ResolvedAssignment, staging_dir: Path) -> dict[str, Path]:
        self.calls.append(f"fetch:{staging_dir.name}")
        return {}


def test_the_factory_runs_once_on_first_use_only() -> None:
    built: list[_Recording] = []

    def factory() -> _Recording:
        built.append(_Recording())
        return built[-1]

    deferred = DeferredFetcher(factory)
    assert not deferred.built
    assert built == []
    assert deferred.fetch(object(), Path("staged")) == {}  # type: ignore[arg-type]
    assert deferred.get() is built[0]
    deferred.fetch(object(), Path("again"))  # type: ignore[arg-type]
    assert len(built) == 1
    assert built[0].calls == ["fetch:staged", "fetch:again"]


def test_concurrent_first_uses_build_one_fetcher() -> None:
    built: list[_Recording] = []
    gate = threading.Barrier(8)

    def factory() -> _Recording:
        built.append(_Recording())
        return built[-1]

    deferred = DeferredFetcher(factory)
    got: list[_Recording] = []

    def use() -> None:
        gate.wait()
        got.append(deferred.get())

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(built) == 1
    assert all(g is built[0] for g in got)
