"""Device telemetry: the durable queue, the windowed recorder, resource sampling and the uploader."""

from edgefleet.agent.telemetry.queue import (
    QueuedRecord,
    QueueLoss,
    QueueStats,
    TelemetryQueue,
    loss_event,
    open_queue,
)
from edgefleet.agent.telemetry.recorder import SecuritySinkAdapter, TelemetryRecorder
from edgefleet.agent.telemetry.resources import FixedResources, SysResources
from edgefleet.agent.telemetry.uploader import ChannelUpload, TelemetryUploader

__all__ = [
    "ChannelUpload",
    "FixedResources",
    "QueueLoss",
    "QueueStats",
    "QueuedRecord",
    "SecuritySinkAdapter",
    "SysResources",
    "TelemetryQueue",
    "TelemetryRecorder",
    "TelemetryUploader",
    "loss_event",
    "open_queue",
]
