"""Step-by-step progress with timings, on stderr, for humans."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    def __init__(self, out: TextIO = sys.stderr) -> None:
        self._out = out
        self._start = time.monotonic()
        self.timings: dict[str, float] = {}
        self._number = 0

    def say(self, text: str) -> None:
        print(f"      {text}", file=self._out, flush=True)

    def command(self, argv: list[str]) -> None:
        print(f"      $ {' '.join(argv)}", file=self._out, flush=True)

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        self._number += 1
        print(f"[{self._number}] {title}", file=self._out, flush=True)
        started = time.monotonic()
        try:
            yield
        finally:
            took = time.monotonic() - started
            self.timings[title] = round(took, 2)
            print(
                f"    done in {took:.1f} s (total {time.monotonic() - self._start:.0f} s)",
                file=self._out,
                flush=True,
            )
