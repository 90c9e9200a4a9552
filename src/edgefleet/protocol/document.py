"""Base of every wire document: versioned, validated, unknown fields preserved."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from edgefleet.protocol.canonical import canonical_json
from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.protocol.names import NAME_PATTERN, SHA256_PATTERN, is_safe_relpath

__all__ = ["NAME_PATTERN", "Document", "Name", "Part", "Sha256Hex", "is_safe_relpath", "validation_details"]

Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Sha256Hex = Annotated[str, StringConstraints(pattern=SHA256_PATTERN)]

D = TypeVar("D", bound="Document")


class Part(BaseModel):
    """A nested part of a document: validated, unknown fields kept."""

    model_config = ConfigDict(extra="allow", frozen=False, populate_by_name=True)


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    """One entry per problem: where, what was expected, what arrived."""
    out: list[dict[str, Any]] = []
    for err in exc.errors(include_url=False):
        got = err.get("input")
        if not isinstance(got, str | int | float | bool | type(None)):
            got = type(got).__name__
        out.append({"field": ".".join(str(p) for p in err["loc"]), "expected": err["msg"], "got": got})
    return out


class Document(Part):
    """A top-level wire document with a ``schema_version``."""

    SCHEMA_VERSION: ClassVar[int] = 1
    KIND: ClassVar[str] = "document"

    schema_version: int = 1

    @classmethod
    def parse(cls: type[D], data: Any) -> D:
        """Validate ``data`` (a dict) into a document, or raise ``InvalidDocumentError``."""
        if not isinstance(data, dict):
            raise InvalidDocumentError(
                f"{cls.KIND} must be an object", expected="object", got=type(data).__name__
            )
        version = data.get("schema_version", cls.SCHEMA_VERSION)
        if version != cls.SCHEMA_VERSION:
            raise InvalidDocumentError(
                f"unsupported {cls.KIND} schema_version",
                code="unsupported_schema_version",
                expected=cls.SCHEMA_VERSION,
                got=version,
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            details = validation_details(exc)
            first = details[0] if details else {}
            raise InvalidDocumentError(
                f"invalid {cls.KIND}: {first.get('field', '?')}: {first.get('expected', '')}",
                details={"errors": details},
            ) from exc

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict, unknown fields included."""
        return self.model_dump(mode="json", by_alias=True)

    def canonical(self) -> bytes:
        return canonical_json(self.to_dict())
