"""Remote agent configuration on the control plane: layers per class, label selector and device, merged
device > selector > class (> the agent's own defaults), delivered inside each device's signed desired state.

Every value is checked against ``protocol.agent_config`` when set (the agent checks it again). Selectors are
the fleet's one grammar (``protocol.selector``). Two selector layers that could both match one device and
that set the same setting would make the answer depend on an order nobody chose: the second is refused
(``config_selector_overlap``). Every change is audited and moves the director epoch, so devices receive it at
their next poll.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from edgefleet.protocol.agent_config import check_agent_config, merge_layers
from edgefleet.protocol.errors import ConflictError, InvalidDocumentError, NotFoundError
from edgefleet.protocol.selector import Requirement, Selector, parse_selector
from edgefleet.server.services.audit import record
from edgefleet.server.services.director_epoch import bump_director_epoch
from edgefleet.server.store.agent_config import AgentConfigRow
from edgefleet.server.store.devices import DeviceRow
from edgefleet.server.store.registry import HardwareClassRow

__all__ = [
    "SCOPES",
    "ConfigLayer",
    "Scope",
    "config_layer",
    "effective_config",
    "layer_to_wire",
    "layers_for",
    "layers_of",
    "list_layers",
    "selectors_overlap",
    "set_config",
    "unset_config",
]

Scope = Literal["class", "selector", "device"]
SCOPES: tuple[Scope, ...] = ("class", "selector", "device")


@dataclass(frozen=True)
class ConfigLayer:
    scope: Scope
    target: str
    selector: dict[str, str]
    settings: dict[str, Any]


def selectors_overlap(a: Selector, b: Selector) -> bool:
    """Pure: some device could match both. Conservative: ``False`` only when one label's requirements
    cannot both hold (``site=a`` and ``site=b``, ``site=a`` and ``site!=a``, ``camera`` and ``!camera``)."""
    by_key = {r.key: r for r in b.requirements}
    return not any(_disjoint(r, by_key[r.key]) for r in a.requirements if r.key in by_key)


def _values(r: Requirement) -> tuple[str, frozenset[str]]:
    """A requirement as the set of values it allows: ``only`` these, ``not`` these (absent allowed),
    ``present`` (any value), ``absent``."""
    if r.op in ("=", "in"):
        return "only", frozenset(r.values)
    if r.op in ("!=", "notin"):
        return "not", frozenset(r.values)
    return ("present", frozenset()) if r.op == "exists" else ("absent", frozenset())


def _disjoint(r1: Requirement, r2: Requirement) -> bool:
    (k1, s1), (k2, s2) = _values(r1), _values(r2)
    if "absent" in (k1, k2):
        other = k2 if k1 == "absent" else k1
        return other in ("only", "present")
    if k1 == "only" and k2 == "only":
        return not s1 & s2
    if k1 == "only" and k2 == "not":
        return s1 <= s2
    if k1 == "not" and k2 == "only":
        return s2 <= s1
    return False


def _target_for(
    session: Session, scope: str, target: str, *, setting: bool = False
) -> tuple[Scope, str, dict[str, str]]:
    """The layer's key. ``setting``: a decommissioned device is refused (``device_decommissioned``); its
    layer may still be unset."""
    if scope == "class":
        if session.get(HardwareClassRow, target[:63]) is None:
            raise NotFoundError("no such hardware class", code="class_not_found", got=target[:80])
        return "class", target, {}
    if scope == "device":
        device = session.get(DeviceRow, target[:32])
        if device is None:
            raise NotFoundError("no such device", code="device_not_found", got=target[:80])
        if setting and device.decommissioned_at is not None:
            raise InvalidDocumentError(
                "the device is decommissioned: it never polls again", code="device_decommissioned",
                expected="an enrolled device that is not decommissioned", got=device.id,
            )  # fmt: skip
        return "device", target, {}
    if scope == "selector":
        selector = parse_selector(target)  # the fleet's one selector grammar (protocol.selector)
        return "selector", str(selector), selector.equalities
    raise InvalidDocumentError(
        "scope must be class, selector or device", code="invalid_scope", got=scope[:32]
    )


def set_config(
    session: Session, scope: str, target: str, settings: Any, *, actor: str, now: datetime
) -> ConfigLayer:
    """Set (add or change) settings in one layer. Checked first: nothing is written when any value, the
    scope or the target is refused."""
    checked = check_agent_config(settings)
    if not checked:
        raise InvalidDocumentError(
            "no settings to set", code="invalid_config_value", expected=">= 1 setting", got={}
        )
    with session.begin():
        _serialize_layer_writes(session)
        kind, key, selector = _target_for(session, scope, target, setting=True)
        row = session.get(AgentConfigRow, (kind, key), with_for_update=True)
        merged = {**(row.settings if row is not None else {}), **checked}
        if kind == "selector":
            _refuse_overlap(session, key, merged)
        if row is None:
            row = AgentConfigRow(scope=kind, target=key, selector=selector, settings={}, updated_by=actor)
            session.add(row)
        row.settings, row.updated_at, row.updated_by = dict(sorted(merged.items())), now, actor
        record(
            session, actor=actor, action="config.set", target=f"{kind}:{key}", now=now,
            details={"settings": checked},
        )  # fmt: skip
        return config_layer(row)


def unset_config(
    session: Session, scope: str, target: str, names: Iterable[str], *, actor: str, now: datetime
) -> ConfigLayer | None:
    """Remove settings from a layer (all of them when ``names`` is empty); the layer goes when empty.
    Returns what is left, or ``None``."""
    wanted = sorted(set(names))
    with session.begin():
        _serialize_layer_writes(session)
        kind, key, _selector = _target_for(session, scope, target)
        row = session.get(AgentConfigRow, (kind, key), with_for_update=True)
        if row is None:
            raise NotFoundError(
                "no configuration at that scope", code="config_not_found", got=f"{kind}:{key}"
            )
        unknown = [n for n in wanted if n not in row.settings]
        if unknown:
            raise NotFoundError(
                "settings not set at that scope", code="config_not_found", expected=sorted(row.settings),
                got=unknown,
            )  # fmt: skip
        left = {k: v for k, v in row.settings.items() if wanted and k not in wanted}
        record(
            session, actor=actor, action="config.unset", target=f"{kind}:{key}", now=now,
            details={"settings": wanted or sorted(row.settings)},
        )  # fmt: skip
        if not left:
            session.delete(row)
            return None
        row.settings, row.updated_at, row.updated_by = left, now, actor
        return config_layer(row)


def _serialize_layer_writes(session: Session) -> None:
    """First in a layer write's transaction: the epoch bump every layer change makes anyway, taken before the
    layer is read, so concurrent writes merge one after the other and none is lost. It holds the epoch row
    on PostgreSQL and the database's write lock on SQLite (which ignores ``FOR UPDATE``); the layer row's
    ``FOR UPDATE`` says the same on PostgreSQL. Should a write still lose a race on the layer's insert, it is
    409 ``conflict`` with nothing kept, and the client sends it again."""
    bump_director_epoch(session)


def _refuse_overlap(session: Session, key: str, settings: Mapping[str, Any]) -> None:
    selector = parse_selector(key)
    others = session.execute(
        select(AgentConfigRow).where(AgentConfigRow.scope == "selector", AgentConfigRow.target != key)
    ).scalars()
    for other in others:
        shared = sorted(set(other.settings) & set(settings))
        if shared and selectors_overlap(selector, parse_selector(other.target)):
            raise ConflictError(
                f"selector {key!r} overlaps {other.target!r}, which sets {', '.join(shared)} too",
                code="config_selector_overlap",
                expected="selectors that differ on some label, or different settings",
                got={"selector": key, "overlaps": other.target, "settings": shared},
            )


def config_layer(row: AgentConfigRow) -> ConfigLayer:
    return ConfigLayer(row.scope, row.target, dict(row.selector), dict(row.settings))  # type: ignore[arg-type]


def list_layers(session: Session) -> list[ConfigLayer]:
    with session.begin():
        rows = session.execute(
            select(AgentConfigRow).order_by(AgentConfigRow.scope, AgentConfigRow.target)
        ).scalars()
        return [config_layer(r) for r in rows]


def layers_for(session: Session, device: DeviceRow) -> list[ConfigLayer]:
    """The layers that apply to ``device``, in increasing precedence: class, selectors, device (inside the
    caller's transaction)."""
    rows = session.execute(
        select(AgentConfigRow).where(
            ((AgentConfigRow.scope == "class") & (AgentConfigRow.target == device.hardware_class))
            | (AgentConfigRow.scope == "selector")
            | ((AgentConfigRow.scope == "device") & (AgentConfigRow.target == device.id))
        )
    ).scalars()
    return layers_of([config_layer(r) for r in rows], device.labels or {})


def layers_of(candidates: Iterable[ConfigLayer], labels: dict[str, str]) -> list[ConfigLayer]:
    """Pure: of the class, selector and device layers read for a device, those that apply to it (selector
    layers matching its labels), in increasing precedence."""
    order = {"class": 0, "selector": 1, "device": 2}
    applying = [
        c
        for c in candidates
        if c.scope != "selector" or all(labels.get(k) == v for k, v in c.selector.items())
    ]
    return sorted(applying, key=lambda c: (order[c.scope], c.target))


def effective_config(layers: list[ConfigLayer]) -> tuple[dict[str, Any], dict[str, str]]:
    """Pure: the merged settings and, per setting, the layer it comes from (``scope:target``)."""
    merged = merge_layers(*(layer.settings for layer in layers))
    sources: dict[str, str] = {}
    for layer in layers:
        for name in layer.settings:
            sources[name] = f"{layer.scope}:{layer.target}"
    return merged, dict(sorted(sources.items()))


def layer_to_wire(layer: ConfigLayer) -> dict[str, Any]:
    return {
        "scope": layer.scope,
        "target": layer.target,
        "selector": layer.selector or None,
        "settings": layer.settings,
    }
