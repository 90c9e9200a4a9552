"""A manual UTC clock for the installer's trial tests: ``advance`` moves it, nothing else does."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

__all__ = ["Clock"]


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
