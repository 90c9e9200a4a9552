from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .fleet import Fleet
from .loopback import Mirror


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    f = Fleet(tmp_path, Mirror)
    yield f
    f.client.close()
    f.mirror.close()  # type: ignore[attr-defined]


@pytest.fixture
def mirror_factory() -> Iterator[Callable[[Path], object]]:
    started: list = []

    def make(root: Path) -> object:
        m = Mirror(root)
        started.append(m)
        return m

    yield make
    for m in started:
        m.close()
