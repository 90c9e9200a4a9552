"""Figures of one candidate from one place, each labelled with where it was measured.

The selection (``select.select_candidate``) reads a table of these: the build host's figures, the class
emulated on the build host, and probes on real devices of the class (``edgefleet build select
--from-probe``) all go through the same function. Latency is only ever compared between figures from the
same place; the most authoritative place the FP32 reference has figures from decides (device, then emulated,
then host).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from edgefleet.optimize.noise import Latency
from edgefleet.optimize.quality import Quality
from edgefleet.protocol.probe import SustainedFigures

__all__ = ["WHERE_RANK", "Figures", "Where", "best_place"]

Where = Literal["host", "emulated", "device"]
WHERE_RANK: dict[str, int] = {"host": 0, "emulated": 1, "device": 2}


@dataclass(frozen=True)
class Figures:
    """``source``: in words where and how (the host's CPU and threads, the emulated limits and how they were
    enforced, the devices). ``provider``: the execution provider the figures were taken on (``None`` when
    the place does not say). ``error``: the candidate failed there (crashed, hung, broke a limit)."""

    candidate: str
    where: Where
    source: str
    provider: str | None = None
    latency: Latency | None = None
    peak_rss_bytes: int | None = None
    load_time_ms: float | None = None
    first_inference_ms: float | None = None
    quality: Quality | None = None
    error: str | None = None
    devices: int = 0
    partial: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)
    others_load_per_cpu: float | None = None  # build host: other processes' load while timing (see measure)
    sustained: SustainedFigures | None = (
        None  # a run under sustained load (emulated class, or the worst device)
    )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["latency"] = self.latency.to_dict() if self.latency else None
        out["quality"] = self.quality.to_dict() if self.quality else None
        out["notes"] = list(self.notes)
        out["sustained"] = self.sustained.model_dump(mode="json") if self.sustained else None
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Figures:
        values = dict(data)
        if values.get("where") not in WHERE_RANK:
            raise ValueError(
                f"figures 'where' must be one of {sorted(WHERE_RANK)}, got {values.get('where')!r}"
            )
        values["latency"] = Latency.from_dict(values["latency"]) if values.get("latency") else None
        values["quality"] = Quality.from_dict(values["quality"]) if values.get("quality") else None
        values["notes"] = tuple(values.get("notes") or ())
        sustained = values.get("sustained")
        values["sustained"] = SustainedFigures.model_validate(sustained) if sustained else None
        return cls(**values)


def best_place(figures: list[Figures], candidate: str) -> Where | None:
    """The most authoritative place where ``candidate`` has latency figures."""
    places: list[Where] = [f.where for f in figures if f.candidate == candidate and f.latency is not None]
    if not places:
        return None
    best: Where = max(places, key=WHERE_RANK.__getitem__)
    return best
