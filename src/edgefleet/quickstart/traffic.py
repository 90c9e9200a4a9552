"""Real inference traffic: held-out handwritten digits sent to each agent's local endpoint."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import httpx
import numpy as np

__all__ = ["AgentTraffic", "TrafficDriver"]


@dataclass
class AgentTraffic:
    """What one agent answered, by the model version that answered."""

    sent: int = 0
    failed: int = 0
    answered: dict[str, int] = field(default_factory=dict)
    correct: dict[str, int] = field(default_factory=dict)
    last_version: str | None = None  # the version that answered the newest request (what it serves now)

    def accuracy(self, version: str) -> float | None:
        n = self.answered.get(version, 0)
        return self.correct.get(version, 0) / n if n else None


class TrafficDriver:
    """One thread per agent at ``rate_per_s`` until ``stop()``; ``reset()`` starts a new tally."""

    def __init__(
        self, endpoints: dict[str, str], inputs: np.ndarray, labels: np.ndarray, *, rate_per_s: float
    ) -> None:
        self._endpoints = endpoints
        self._inputs = inputs
        self._labels = labels
        self._period_s = 1.0 / rate_per_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.stats: dict[str, AgentTraffic] = {name: AgentTraffic() for name in endpoints}
        self._threads = [
            threading.Thread(target=self._run, args=(name, url, i), name=f"traffic-{name}", daemon=True)
            for i, (name, url) in enumerate(endpoints.items())
        ]

    def start(self) -> TrafficDriver:
        for t in self._threads:
            t.start()
        return self

    def reset(self) -> dict[str, AgentTraffic]:
        with self._lock:
            old, self.stats = self.stats, {name: AgentTraffic() for name in self._endpoints}
        return old

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)

    def _run(self, name: str, url: str, seed: int) -> None:
        rng = np.random.default_rng(seed)
        with httpx.Client(base_url=url, timeout=5.0) as http:
            while not self._stop.is_set():
                i = int(rng.integers(len(self._inputs)))
                sample = self._inputs[i : i + 1]
                try:
                    r = http.post("/v1/predict", json={"inputs": {"input": sample.tolist()}})
                    body = r.json() if r.status_code == 200 else None
                except (httpx.HTTPError, ValueError):
                    body = None
                with self._lock:
                    stats = self.stats[name]
                    stats.sent += 1
                    if body is None:
                        stats.failed += 1
                    else:
                        version = str(body.get("model_version"))
                        logits = np.asarray(body["outputs"]["logits"]["data"], dtype=np.float32)
                        stats.answered[version] = stats.answered.get(version, 0) + 1
                        stats.last_version = version
                        if int(logits.reshape(-1).argmax()) == int(self._labels[i]):
                            stats.correct[version] = stats.correct.get(version, 0) + 1
                time.sleep(self._period_s * rng.uniform(0.5, 1.5))
