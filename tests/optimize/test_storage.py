"""Startup on the class's storage: the model read at the declared speed through a rate-limited reader, load
time and first inference reported per candidate, and the class's load-time budget enforced by selection."""

from __future__ import annotations

import json
from pathlib import Path

from edgefleet.optimize import BuildConfig, run_build
from edgefleet.optimize.storage import io_max_statement, throttled_read
from edgefleet.protocol import parse_classes_toml

from .conftest import Digits


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_throttled_read_holds_the_declared_speed_and_returns_every_byte(tmp_path: Path) -> None:
    data = bytes(range(256)) * 4000  # 1,024,000 bytes
    path = tmp_path / "model.onnx"
    path.write_bytes(data)
    fake = FakeTime()
    assert throttled_read(path, 100_000.0, clock=fake.clock, sleep=fake.sleep, chunk_bytes=65536) == data
    assert abs(fake.now - len(data) / 100_000.0) < 1e-9  # exactly the time the declared speed allows
    assert len(fake.slept) == -(-len(data) // 65536)
    fast = FakeTime()
    assert throttled_read(path, None, clock=fast.clock, sleep=fast.sleep) == data
    assert fast.slept == []


def _classes(read_mb_s: float, budget_ms: float) -> str:
    return f"""
schema_version = 1
[class.sd-card]
cpu_arch = "x86_64"
precisions = ["fp32"]
threads = {{ intra_op = 1, inter_op = 1 }}
budgets = {{ ram_mb = 1024, storage_mb = 2048, max_model_mb = 50, storage_read_mb_s = {read_mb_s} }}
performance = {{ latency_p95_ms = 500.0, load_time_ms = {budget_ms} }}
"""


def test_load_time_under_the_class_storage_is_measured_and_its_budget_enforced(
    digits: Digits, tmp_path: Path
) -> None:
    size = digits.model.stat().st_size
    read_mb_s = 0.5
    floor_ms = size / (read_mb_s * 1e6) * 1000.0  # the throttled read alone cannot take less
    config = BuildConfig.test_size()
    roomy = parse_classes_toml(_classes(read_mb_s, budget_ms=60_000.0))
    result = run_build(digits.model, roomy, digits.calibration, digits.validation, tmp_path / "a", config)
    (cls,) = result.classes
    assert cls.selection.chosen == "fp32"
    startup = next(f for f in cls.figures if f.load_time_ms is not None)
    assert startup.where == "emulated"
    assert "0.5 MB/s through a rate-limited reader" in startup.source
    assert "io.max" in startup.source  # says whether the block device could have been throttled instead
    assert startup.load_time_ms >= floor_ms
    assert startup.first_inference_ms is not None
    manifest = json.loads((tmp_path / "a" / "sd-card" / "manifest.json").read_text())
    assert manifest["metrics"]["load_time_ms"] >= floor_ms
    # The same model on a class whose load-time budget the declared storage cannot meet: refused.
    tight = parse_classes_toml(_classes(read_mb_s, budget_ms=floor_ms / 2))
    result = run_build(digits.model, tight, digits.calibration, digits.validation, tmp_path / "b", config)
    (cls,) = result.classes
    assert cls.selection.failed
    (verdict,) = [v for v in cls.selection.verdicts if v.name == "fp32"]
    assert any(r.startswith("load time") and "(emulated)" in r for r in verdict.reasons)


def test_io_max_statement_says_why_the_block_device_is_not_throttled(tmp_path: Path) -> None:
    assert "cgroups unreadable" in io_max_statement(tmp_path / "none", tmp_path / "none2")
    mounts = tmp_path / "mounts"
    mounts.write_text(f"cgroup2 {tmp_path} cgroup2 rw 0 0\n")
    own = tmp_path / "cgroup"
    own.write_text("0::/edge\n")
    (tmp_path / "edge").mkdir()
    (tmp_path / "edge" / "cgroup.controllers").write_text("cpu memory\n")
    assert "no io controller" in io_max_statement(mounts, own)
