"""On-device inference (ARCHITECTURE 3.5): in-process API, local HTTP endpoint, bounded queue,
degraded-mode ladder, shadow evaluation. See docs/serving.md."""

from edgefleet.agent.serve.admission import AdmissionPolicy
from edgefleet.agent.serve.api import adapter_for, current_version, load, mode, predict, service, unload
from edgefleet.agent.serve.config import RuleConfig, ServingConfig
from edgefleet.agent.serve.endpoint import EndpointConfig, LocalEndpoint
from edgefleet.agent.serve.errors import (
    BadTensorError,
    InferenceDeferredError,
    NoModelError,
    ServerBusyError,
    ServingError,
)
from edgefleet.agent.serve.ladder import RUNGS, LadderPolicy, Rung
from edgefleet.agent.serve.metrics import MetricsSink, NullMetrics
from edgefleet.agent.serve.runtimes import RuntimeAdapters
from edgefleet.agent.serve.service import InferenceService, Liveness, Prediction
from edgefleet.agent.serve.shadow import AgreementStats, ShadowConfig, shadow_verdict
from edgefleet.agent.serve.source import (
    ActiveArtifact,
    ActiveSource,
    SlotActiveSource,
    StaticSource,
    read_artifact_dir,
)
from edgefleet.agent.serve.status import STATUS_FILE, read_status

__all__ = [
    "RUNGS",
    "STATUS_FILE",
    "ActiveArtifact",
    "ActiveSource",
    "AdmissionPolicy",
    "AgreementStats",
    "BadTensorError",
    "EndpointConfig",
    "InferenceDeferredError",
    "InferenceService",
    "LadderPolicy",
    "Liveness",
    "LocalEndpoint",
    "MetricsSink",
    "NoModelError",
    "NullMetrics",
    "Prediction",
    "RuleConfig",
    "Rung",
    "RuntimeAdapters",
    "ServerBusyError",
    "ServingConfig",
    "ServingError",
    "ShadowConfig",
    "SlotActiveSource",
    "StaticSource",
    "adapter_for",
    "current_version",
    "load",
    "mode",
    "predict",
    "read_artifact_dir",
    "read_status",
    "service",
    "shadow_verdict",
    "unload",
]
