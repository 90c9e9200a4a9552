"""The fleet's twin at scale: a rollout on 100,000 simulated devices over a simulated week.

The twin (``edgefleet.server.services.twin``) runs the real rollout policy in virtual time; this benchmark
prints what a plan costs and what it tells, each figure against a baseline measured in the same run:

1. wall time of the week on ``--devices`` devices against the same week on ``--devices / 100`` devices
   (how the cost scales; linear would be 100x);
2. a good model, staged (4 stages), against everyone at once: time until the rollout completes and until
   every device runs it;
3. a bad model (3x slower), staged, against everyone at once: the fleet exposed to it at the peak and for
   how long.

The fleet: two classes; 10 % of one class has random outages (3 a week, 1-4 h), 20 % of the other is off
every night and switches only in a 02:00-04:00 window; links 1-100 Mbit/s; 10 % throttle under heat.

Run: ``.venv/bin/python bench/rollout.py [--devices 100000] [--compare-devices 10000] [--seed 1]``
(the benchmark of the real control plane with simulated devices is ``bench/rollout_live.py``).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from typing import Any

from edgefleet.server.services.rollouts.spec import RolloutSpec
from edgefleet.server.services.twin.fleet import FleetSpec, parse_fleet
from edgefleet.server.services.twin.plan import parse_rollout_spec
from edgefleet.server.services.twin.run import simulate

WEEK_S = 7 * 86400


def fleet(devices: int, *, slowdown: float = 1.0, seed: int = 1) -> FleetSpec:
    half = devices // 2
    common: dict[str, Any] = {
        "sites": 50,
        "artifact_bytes": 20_000_000,
        "install_s": 20,
        "throttle_share": 0.1,
        "throttle_factor": 1.6,
        "requests_per_s": 0.5,
        "link": {"min_mbps": 1, "max_mbps": 100},
        "current": {"latency_p95_ms": 20, "error_rate": 0.001},
        "candidate": {"latency_p95_ms": 20 * slowdown, "error_rate": 0.001},
    }
    jetson = {
        **common,
        "devices": half,
        "poll_s": 300,
        "envelope_p95_ms": 60,
        "outages": {"fraction": 0.1, "pattern": "random", "per_week": 3, "min_s": 3600, "max_s": 14400},
    }
    cart = {
        **common,
        "devices": devices - half,
        "poll_s": 600,
        "envelope_p95_ms": 80,
        "update_window": "02:00-04:00",
        "outages": {"fraction": 0.2, "pattern": "nightly", "from_hour": 20, "to_hour": 6},
    }
    return parse_fleet(
        {
            "name": f"{devices} devices",
            "seed": seed,
            "horizon_s": WEEK_S,
            "tick_s": 60,
            "telemetry_s": 300,
            "scenario": {"bad_model": slowdown > 1},
            "classes": {"jetson-vision-standard": jetson, "medical-cart-cpu": cart},
        }
    )


def staged() -> RolloutSpec:
    stage = {"deadline_s": 86400, "on_deadline": "proceed", "gates": {"max_install_failure_rate": 0.02}}
    sizes = [({"count": 20}, 3600), ({"percent": 5}, 7200), ({"percent": 25}, 14400), ({"percent": 100}, 0)]
    return parse_rollout_spec({"stages": [{**size, "soak_s": soak, **stage} for size, soak in sizes]})


def at_once() -> RolloutSpec:
    return parse_rollout_spec({"stages": [{"percent": 100, "soak_s": 0, "deadline_s": 86400}]})


def timed(f: FleetSpec, spec: RolloutSpec) -> tuple[dict[str, Any], float]:
    start = time.perf_counter()
    result = simulate(f, spec)
    return result, time.perf_counter() - start


def hours(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds / 3600:.1f} h"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if not a or not b else f"{a / b:.3g}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--compare-devices", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"host: {platform.machine()}, {cpus} CPUs usable (one used), Python {platform.python_version()}")

    small_n = max(args.devices // 100, 100)
    big, big_s = timed(fleet(args.devices, seed=args.seed), staged())
    small, small_s = timed(fleet(small_n, seed=args.seed), staged())
    print(f"\n1. a simulated week, staged rollout of a good model: {big['outcome']}")
    print(
        f"   {args.devices} devices: {big_s:.1f} s wall ({big['simulated_s'] / big_s:,.0f} simulated s per s)"
    )
    print(f"   baseline {small_n} devices: {small_s:.2f} s wall ({small['outcome']})")
    print(f"   ratio {big_s / small_s:.1f}x the wall time for {args.devices / small_n:.0f}x the devices")

    n = args.compare_devices
    good_staged, _ = timed(fleet(n, seed=args.seed), staged())
    good_once, _ = timed(fleet(n, seed=args.seed), at_once())
    print(f"\n2. a good model on {n} devices: staged vs everyone at once (baseline)")
    for label, key in (("rollout completes", "completed_at_s"), ("every device runs it", "converged_at_s")):
        a, b = good_staged[key], good_once[key]
        print(f"   {label:22} staged {hours(a):>8}   at once {hours(b):>8}   ratio {ratio(a, b)}")
    for d in good_staged["deadlines"]:
        print(f"   staged, deadline of stage {d['stage']}: {d['pending']} pending {d['why']}")

    bad_staged, _ = timed(fleet(n, slowdown=3.0, seed=args.seed), staged())
    bad_once, _ = timed(fleet(n, slowdown=3.0, seed=args.seed), at_once())
    print(f"\n3. a 3x slower model on {n} devices: staged vs everyone at once (baseline)")
    for label, run in (("staged", bad_staged), ("at once", bad_once)):
        halt = run["halt"] or {}
        ex = run["exposure"]
        print(
            f"   {label:8} halted in stage {halt.get('stage')} by {halt.get('gate')}"
            f" ({halt.get('hardware_class')}): peak {ex['peak_devices']} devices"
            f" ({ex['peak_percent']:.2f} %), exposed for"
            f" {hours(ex['duration_s'])}; {run['bytes_sent'] / 1e9:.1f} GB sent"
        )
    peaks = bad_staged["exposure"]["peak_devices"], bad_once["exposure"]["peak_devices"]
    print(f"   peak exposure ratio staged / at once: {ratio(*peaks)}; bytes sent ratio: "
          f"{ratio(bad_staged['bytes_sent'], bad_once['bytes_sent'])}")  # fmt: skip


if __name__ == "__main__":
    main()
