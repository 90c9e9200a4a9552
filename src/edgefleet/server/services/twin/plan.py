"""Plan a rollout: validate the spec as the API does, run it (and a second one to compare) on the twin."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from edgefleet.protocol.document import validation_details
from edgefleet.protocol.errors import InvalidDocumentError
from edgefleet.server.services.rollouts.spec import RolloutSpec
from edgefleet.server.services.twin.fleet import FleetSpec
from edgefleet.server.services.twin.run import simulate

__all__ = ["parse_rollout_spec", "plan"]


def parse_rollout_spec(data: Any) -> RolloutSpec:
    """The spec as ``POST /v1/rollouts`` validates it, refused with the API's own code and field names
    (``invalid_document``, fields as ``spec.<path>``)."""
    try:
        return RolloutSpec.model_validate(data if data is not None else {})
    except ValidationError as exc:
        errors = [
            {**e, "field": ".".join(p for p in ("spec", e["field"]) if p)} for e in validation_details(exc)
        ]
        first = errors[0]
        raise InvalidDocumentError(
            f"invalid request: {first['field']}: {first['expected']}",
            code="invalid_document",
            details={"errors": errors},
        ) from exc


def plan(
    fleet: FleetSpec, spec: RolloutSpec, *, seed: int | None = None, compare: RolloutSpec | None = None
) -> dict[str, Any]:
    """``{"seed", "runs": [...]}``: ``spec`` (and ``compare``) on the same fleet drawn with ``seed``."""
    chosen = fleet.seed if seed is None else seed
    runs = [{"label": "spec", "spec": spec.model_dump(mode="json"), **simulate(fleet, spec, seed=chosen)}]
    if compare is not None:
        runs.append(
            {
                "label": "compare",
                "spec": compare.model_dump(mode="json"),
                **simulate(fleet, compare, seed=chosen),
            }
        )
    return {"seed": chosen, "fleet": fleet.name, "devices": fleet.devices, "runs": runs}
