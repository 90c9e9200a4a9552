from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from edgefleet.protocol import HardwareClass, parse_classes_toml

REPO = Path(__file__).resolve().parents[2]

CPU_CLASS_TOML = """
schema_version = 1
[class.cpu-small]
cpu_arch = "x86_64"
precisions = ["fp32", "int8"]
threads = { intra_op = 1, inter_op = 1 }
budgets = { ram_mb = 1024, storage_mb = 2048, max_model_mb = 50 }
performance = { latency_p95_ms = 500.0 }
[class.cpu-small.runtime]
execution_providers = ["CPUExecutionProvider"]
[class.gpu-small]
cpu_arch = "x86_64"
accelerator = "nvidia-t4"
precisions = ["fp32", "fp16"]
threads = { intra_op = 1, inter_op = 1 }
budgets = { ram_mb = 1024, storage_mb = 2048, max_model_mb = 50 }
performance = { latency_p95_ms = 500.0 }
[class.gpu-small.runtime]
execution_providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
"""


def load_digits_module():
    import edgefleet.optimize.digits as module

    return module


@dataclass(frozen=True)
class Digits:
    root: Path
    model: Path
    mlp: Path
    calibration: Path
    validation: Path
    val_x: np.ndarray
    val_y: np.ndarray


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Digits:
    """The reference CNN, trained once per session (a few seconds, seeded), and its real data."""
    root = tmp_path_factory.mktemp("digits")
    module = load_digits_module()
    assert module.main([str(root)]) == 0
    val = np.load(root / "validation.npz")
    return Digits(
        root,
        root / "model.onnx",
        root / "mlp.onnx",
        root / "calibration.npz",
        root / "validation.npz",
        val["input"],
        val["labels"],
    )


@pytest.fixture(scope="session")
def cpu_classes() -> list[HardwareClass]:
    return parse_classes_toml(CPU_CLASS_TOML)


@pytest.fixture(scope="session")
def example_classes() -> list[HardwareClass]:
    return parse_classes_toml((REPO / "examples" / "hardware-classes.toml").read_text())
