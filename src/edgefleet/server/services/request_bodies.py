"""Operator requests that both the API and the dashboard accept: one model each, one set of errors.

The API validates these as JSON bodies (FastAPI; refused by ``api/errors.py``). The dashboard builds the same
document from its form fields and validates it with :func:`validate_body`, which refuses it exactly as the
API does: ``invalid_document`` (422), the message naming the first problem, and ``details.errors`` with
``field``, ``expected`` and ``got`` per problem. Then both call the same use case (``create_rollout``,
``create_enrollment_token``, ``pin_artifact``,
``pin_selection``, ``create_webhook``), which refuses the rest with its own codes.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgefleet.protocol.document import NAME_PATTERN, validation_details
from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.protocol.selector import MAX_SELECTOR_CHARS
from edgefleet.protocol.webhooks import EVENT_KINDS
from edgefleet.server.services import enrollment
from edgefleet.server.services.alerts import webhooks
from edgefleet.server.services.rollouts.spec import RolloutSpec

__all__ = [
    "MAX_ERRORS",
    "SELECTOR_FIELD",
    "EnrollmentTokenCreate",
    "PinBody",
    "RolloutCreate",
    "SelectionPin",
    "WebhookCreate",
    "validate_body",
]

MAX_ERRORS = 50
_MAX_GOT_CHARS = 200
Body = TypeVar("Body", bound=BaseModel)


class RolloutCreate(BaseModel):
    """``POST /v1/rollouts`` and the dashboard's "new rollout" form."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field(max_length=63)
    targets: dict[str, str] = Field(min_length=1, max_length=32, description="hardware class -> artifact id")
    selector: (
        Annotated[dict[str, str], Field(max_length=16)] | Annotated[str, Field(max_length=MAX_SELECTOR_CHARS)]
    ) = Field(
        default_factory=dict,
        description="a label selector ('site=plant-3,line!=2'), or labels devices must have ({key: value})",
    )
    slot: str = Field(default="default", max_length=63)
    spec: RolloutSpec = Field(default_factory=RolloutSpec)


class EnrollmentTokenCreate(BaseModel):
    """``POST /v1/enrollment-tokens`` and the dashboard's "new enrollment token" form."""

    model_config = ConfigDict(extra="forbid")
    hardware_class: str = Field(max_length=63, json_schema_extra={"pattern": NAME_PATTERN})
    labels: dict[str, str] = Field(default_factory=dict, json_schema_extra=enrollment.LABELS_SCHEMA)
    serial: str | None = Field(
        default=None, max_length=128, json_schema_extra={"pattern": enrollment.SERIAL_PATTERN}
    )
    ttl_s: int = Field(default=3600, ge=60, le=30 * 86400)
    uses: int = Field(default=1, ge=1, le=enrollment.MAX_TOKEN_USES)


class PinBody(BaseModel):
    """``PUT /v1/pins/{scope}/{target}/{slot}`` and the dashboard's "set a pin" form."""

    model_config = ConfigDict(extra="forbid")
    artifact_id: str = Field(max_length=20)


SELECTOR_FIELD = Field(
    min_length=1,
    max_length=MAX_SELECTOR_CHARS,
    description="label selector, e.g. 'site=plant-3,line!=2' (see docs/operations.md)",
)


class SelectionPin(BaseModel):
    """``POST /v1/pins/by-selector`` and the dashboard's "pin by label selector" form."""

    model_config = ConfigDict(extra="forbid")
    selector: str = SELECTOR_FIELD
    slot: str = Field(default="default", max_length=63, pattern=NAME_PATTERN)
    artifact_id: str | None = Field(default=None, max_length=20, description="null: clear the pins")
    hardware_class: str | None = Field(
        default=None, max_length=63, pattern=NAME_PATTERN, description="needed when clearing"
    )
    dry_run: bool = False


class WebhookCreate(BaseModel):
    """``POST /v1/webhooks`` and the dashboard's "add a webhook" form."""

    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(max_length=63)
    url: str = Field(max_length=webhooks.MAX_URL_CHARS)
    events: list[str] = Field(default_factory=list, max_length=len(EVENT_KINDS))
    secret: str | None = Field(default=None, max_length=webhooks.MAX_SECRET_CHARS)


def _got(value: Any) -> Any:
    return value[:_MAX_GOT_CHARS] if isinstance(value, str) else value


def validate_body(model: type[Body], data: Any) -> Body:
    """``data`` validated as ``model``, or ``invalid_document`` with the API's message and details."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [
            {**e, "got": _got(e["got"]), "field": e["field"] or "body"} for e in validation_details(exc)
        ]
        errors = errors[:MAX_ERRORS]
        first = errors[0]
        raise InvalidDocumentError(
            f"invalid request: {first['field']}: {first['expected']}",
            code="invalid_document",
            details={"errors": errors},
        ) from exc
