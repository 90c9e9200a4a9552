"""Wire documents every role shares. Imports stdlib, pydantic, msgspec and cryptography only.

The names below are loaded on first use (PEP 562), so a module that needs only ``protocol.errors`` or
``protocol.canonical`` (the agent's network child, the serving path) does not import pydantic and every model
with them: resident memory is imported code (issue 17).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgefleet.lazy_exports import lazy_exports
from edgefleet.protocol import errors

if TYPE_CHECKING:  # explicit re-exports for type checkers; at run time __getattr__ loads them
    from edgefleet.protocol.canonical import canonical_json as canonical_json
    from edgefleet.protocol.canonical import parse_json_bounded as parse_json_bounded
    from edgefleet.protocol.document import Document as Document
    from edgefleet.protocol.document import is_safe_relpath as is_safe_relpath
    from edgefleet.protocol.errors import AuthenticationError as AuthenticationError
    from edgefleet.protocol.errors import ConflictError as ConflictError
    from edgefleet.protocol.errors import EdgefleetError as EdgefleetError
    from edgefleet.protocol.errors import InvalidDocumentError as InvalidDocumentError
    from edgefleet.protocol.errors import NotFoundError as NotFoundError
    from edgefleet.protocol.errors import PayloadTooLargeError as PayloadTooLargeError
    from edgefleet.protocol.errors import PermissionDeniedError as PermissionDeniedError
    from edgefleet.protocol.errors import RateLimitedError as RateLimitedError
    from edgefleet.protocol.errors import ServiceUnavailableError as ServiceUnavailableError
    from edgefleet.protocol.errors import error_from_body as error_from_body
    from edgefleet.protocol.hardware_class import HardwareClass as HardwareClass
    from edgefleet.protocol.hardware_class import parse_classes_toml as parse_classes_toml
    from edgefleet.protocol.manifest import ArtifactFile as ArtifactFile
    from edgefleet.protocol.manifest import ArtifactManifest as ArtifactManifest

_HOMES = {
    "canonical": ("canonical_json", "parse_json_bounded"),
    "document": ("Document", "is_safe_relpath"),
    "errors": tuple(errors.__all__),  # a light module: no pydantic
    "hardware_class": ("HardwareClass", "parse_classes_toml"),
    "manifest": ("ArtifactFile", "ArtifactManifest"),
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _HOMES, globals())
