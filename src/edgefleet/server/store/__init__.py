"""Persistence: SQLAlchemy 2 tables (one module per table group), the engine factory, migrations."""

from edgefleet.server.store.base import Base, UTCDateTime
from edgefleet.server.store.engine import Database, make_engine, normalize_url
from edgefleet.server.store.operators import AuditRow, OperatorTokenRow
from edgefleet.server.store.registry import ArtifactRow, HardwareClassRow, ModelRow, ModelVersionRow

__all__ = [
    "ArtifactRow",
    "AuditRow",
    "Base",
    "Database",
    "HardwareClassRow",
    "ModelRow",
    "ModelVersionRow",
    "OperatorTokenRow",
    "UTCDateTime",
    "make_engine",
    "normalize_url",
]
