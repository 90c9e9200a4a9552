"""What ``edgefleet build`` found: per class (``ClassResult``) and for the whole build (``BuildResult``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgefleet.optimize.candidates import Candidate
from edgefleet.optimize.cpu_features import CpuInfo
from edgefleet.optimize.figures import Figures
from edgefleet.optimize.mixed import MixedSearch
from edgefleet.optimize.model_info import ModelInfo
from edgefleet.optimize.openvino_build import OpenVinoClassBuild
from edgefleet.optimize.quality import Quality
from edgefleet.optimize.robustness import RobustnessReport
from edgefleet.optimize.select import ClassPolicy, Measured, Selection
from edgefleet.optimize.session import SessionSettings
from edgefleet.protocol.hardware_class import HardwareClass

__all__ = ["BuildResult", "ClassResult"]


@dataclass
class ClassResult:
    hwclass: HardwareClass
    note: str
    settings: SessionSettings
    measured: list[Measured]
    selection: Selection
    manifest: dict[str, Any] | None = None
    figures: list[Figures] = field(default_factory=list)
    policy: ClassPolicy | None = None
    emulation: dict[str, Any] | None = None  # how the class's limits were applied on the build host
    openvino: OpenVinoClassBuild | None = None
    """An OpenVINO class's own candidates (IR) and qualities (``openvino_build``)."""


@dataclass
class BuildResult:
    out: Path
    model: ModelInfo
    cpu: CpuInfo
    classes: list[ClassResult] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    qualities: dict[str, Quality] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    mixed: MixedSearch | None = None
    robustness: RobustnessReport | None = None

    @property
    def failed_classes(self) -> list[str]:
        return [c.hwclass.name for c in self.classes if c.selection.failed]
